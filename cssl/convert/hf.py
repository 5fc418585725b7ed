"""transformers wav2vec 2.0 directories: ``config.json`` + ``model.safetensors`` (or
``pytorch_model.bin``), with ``vocab.json`` for ``Wav2Vec2ForCTC`` and
``preprocessor_config.json`` (``do_normalize``).

Read: ``Wav2Vec2ForPreTraining`` (quantizer and projections kept), ``Wav2Vec2Model``
(towers) and ``Wav2Vec2ForCTC`` (towers, CTC head and vocabulary). Written: the first or
the last, loadable by ``from_pretrained``. What transformers has no field for (the Gumbel
temperature schedule, the local tower's gradient scale, a calibrated temperature) rides
along in ``config.json`` under ``cssl_*`` keys, so cssl -> HF -> cssl is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cssl import SAMPLE_RATE
from cssl.convert import payload
from cssl.convert.keymaps import HF, rename
from cssl.convert.vocab import export_symbols, import_vocab, reorder_rows
from cssl.model import ModelConfig
from cssl.model.config import ContextConfig, FeatureEncoderConfig, MaskConfig, QuantizerConfig
from cssl.train.checkpoint import CheckpointError
from cssl.utils.io import atomic_write, atomic_write_json

ARCHITECTURES = ("Wav2Vec2ForPreTraining", "Wav2Vec2Model", "Wav2Vec2ForCTC")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
UNSUPPORTED = {"hubert": "HuBERT", "wavlm": "WavLM", "data2vec-audio": "data2vec", "wav2vec2-conformer": "wav2vec 2.0 Conformer",
               "wav2vec2-bert": "w2v-BERT 2.0", "unispeech": "UniSpeech", "unispeech-sat": "UniSpeech-SAT", "sew": "SEW"}


def is_hf_dir(path: Path) -> bool:
    """A folder with a ``config.json``."""
    return path.is_dir() and (path / "config.json").is_file()


def config_from_hf(hf: dict[str, Any], source: str) -> ModelConfig:
    """Our architecture for a transformers ``Wav2Vec2Config`` dict; other model types are refused."""
    kind = hf.get("model_type")
    if kind != "wav2vec2":
        name = UNSUPPORTED.get(kind, repr(kind))
        raise CheckpointError(f"{source}: a {name} model; cssl reads wav2vec 2.0 models only "
                              f"(transformers {', '.join(ARCHITECTURES)}; fairseq wav2vec2, wav2vec_ctc; torchaudio Wav2Vec2Model)")
    for key in ("hidden_act", "feat_extract_activation"):
        if hf.get(key, "gelu") != "gelu":
            raise CheckpointError(f"{source}: {key}={hf[key]!r}; cssl models use GELU")
    if hf.get("add_adapter"):
        raise CheckpointError(f"{source}: add_adapter=true (an adapter on top of the encoder) is not supported")
    extra = hf.get("cssl_model", {})
    defaults = ModelConfig()
    return ModelConfig(
        feature_encoder=FeatureEncoderConfig(
            conv_layers=[(int(c), int(k), int(s)) for c, k, s in zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"])],
            norm="layer_norm" if hf.get("feat_extract_norm", "group") == "layer" else "group_norm",
            bias=bool(hf.get("conv_bias", False)),
        ),
        context=ContextConfig(
            embed_dim=hf["hidden_size"], num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
            ffn_dim=hf["intermediate_size"], layer_norm_first=bool(hf.get("do_stable_layer_norm", False)),
            pos_conv_kernel=hf["num_conv_pos_embeddings"], pos_conv_groups=hf["num_conv_pos_embedding_groups"],
            dropout=hf.get("hidden_dropout", 0.1), attention_dropout=hf.get("attention_dropout", 0.1),
            activation_dropout=hf.get("activation_dropout", 0.0), dropout_input=hf.get("feat_proj_dropout", 0.1),
            layer_drop=hf.get("layerdrop", 0.1),
        ),
        quantizer=QuantizerConfig(
            groups=hf.get("num_codevector_groups", 2), entries=hf.get("num_codevectors_per_group", 320),
            dim=hf.get("codevector_dim", 256),
            temperature=tuple(extra.get("gumbel_temperature", defaults.quantizer.temperature)),
        ),
        mask=MaskConfig(prob=hf.get("mask_time_prob", 0.05), span=hf.get("mask_time_length", 10),
                        min_spans=hf.get("mask_time_min_masks", 2)),
        final_dim=hf.get("proj_codevector_dim", 256),
        dropout_features=hf.get("feat_quantizer_dropout", 0.0),
        feature_grad_scale=extra.get("feature_grad_scale", defaults.feature_grad_scale),
    )


def config_to_hf(cfg: ModelConfig, architecture: str, vocab_size: int, pad_token_id: int,
                 loss: dict[str, Any] | None = None) -> dict[str, Any]:
    """A transformers ``Wav2Vec2Config`` dict for our architecture."""
    fe, ctx, q, m = cfg.feature_encoder, cfg.context, cfg.quantizer, cfg.mask
    loss = loss or {}
    return {
        "architectures": [architecture], "model_type": "wav2vec2",
        "conv_dim": [c for c, _, _ in fe.conv_layers], "conv_kernel": [k for _, k, _ in fe.conv_layers],
        "conv_stride": [s for _, _, s in fe.conv_layers], "num_feat_extract_layers": len(fe.conv_layers),
        "conv_bias": fe.bias, "feat_extract_norm": "layer" if fe.norm == "layer_norm" else "group",
        "feat_extract_activation": "gelu", "hidden_act": "gelu", "layer_norm_eps": 1e-5,
        "hidden_size": ctx.embed_dim, "num_hidden_layers": ctx.num_layers, "num_attention_heads": ctx.num_heads,
        "intermediate_size": ctx.ffn_dim, "do_stable_layer_norm": ctx.layer_norm_first,
        "num_conv_pos_embeddings": ctx.pos_conv_kernel, "num_conv_pos_embedding_groups": ctx.pos_conv_groups,
        "hidden_dropout": ctx.dropout, "attention_dropout": ctx.attention_dropout,
        "activation_dropout": ctx.activation_dropout, "feat_proj_dropout": ctx.dropout_input,
        "layerdrop": ctx.layer_drop, "final_dropout": 0.0,
        "num_codevector_groups": q.groups, "num_codevectors_per_group": q.entries, "codevector_dim": q.dim,
        "proj_codevector_dim": cfg.final_dim, "feat_quantizer_dropout": cfg.dropout_features,
        "mask_time_prob": m.prob, "mask_time_length": m.span, "mask_time_min_masks": m.min_spans,
        "num_negatives": loss.get("num_distractors", 100),
        "contrastive_logits_temperature": loss.get("logit_temperature", 0.1),
        "diversity_loss_weight": loss.get("diversity_weight", 0.1),
        "vocab_size": vocab_size, "pad_token_id": pad_token_id, "ctc_loss_reduction": "sum",
        "cssl_model": {"gumbel_temperature": list(q.temperature), "feature_grad_scale": cfg.feature_grad_scale},
    }


def transformers_config(cfg: ModelConfig, architecture: str = "Wav2Vec2ForPreTraining", vocab_size: int = 32,
                        pad_token_id: int = 0, loss: dict[str, Any] | None = None):
    """A transformers ``Wav2Vec2Config`` object for our architecture (imports transformers)."""
    from transformers import Wav2Vec2Config

    data = config_to_hf(cfg, architecture, vocab_size, pad_token_id, loss)
    for key in ("architectures", "model_type", "cssl_model"):
        data.pop(key)
    return Wav2Vec2Config(**data)


def read_hf(path: Path) -> dict[str, Any]:
    """The cssl checkpoint dict of a transformers wav2vec 2.0 directory."""
    source = str(path)
    hf = _json(path / "config.json")
    cfg = config_from_hf(hf, source)
    state = _weights(path)
    if not any(k.startswith("wav2vec2.") for k in state):  # a bare Wav2Vec2Model
        state = {f"wav2vec2.{k}": v for k, v in state.items()}
    ours = rename(state, HF, to_peer=False, source=source)
    normalize = bool(_json(path / "preprocessor_config.json").get("do_normalize", True)) \
        if (path / "preprocessor_config.json").is_file() else True
    loss = {"num_distractors": hf.get("num_negatives", 100),
            "logit_temperature": hf.get("contrastive_logits_temperature", 0.1),
            "diversity_weight": hf.get("diversity_loss_weight", 0.1)}
    if "model.aux.weight" not in ours:
        return payload.pretrain_payload(cfg, ours, normalize, f"transformers folder {source}", loss)
    if not (path / "vocab.json").is_file():
        raise CheckpointError(f"{source}: a CTC model without vocab.json; put the tokenizer's vocab.json beside config.json")
    token_ids = _json(path / "vocab.json")
    symbols = [t for t, _ in sorted(token_ids.items(), key=lambda item: item[1])]
    if len(symbols) != ours["model.aux.weight"].shape[0]:
        raise CheckpointError(f"{source}: vocab.json has {len(symbols)} symbols, the CTC head "
                              f"{ours['model.aux.weight'].shape[0]} outputs")
    tok = _json(path / "tokenizer_config.json") if (path / "tokenizer_config.json").is_file() else {}
    blank = symbols[hf.get("pad_token_id", 0)]
    vocab, rows = import_vocab(symbols, blank, _token(tok, "unk_token", "<unk>"),
                               _token(tok, "word_delimiter_token", "|"), source)
    head = reorder_rows({"weight": ours.pop("model.aux.weight"), "bias": ours.pop("model.aux.bias")}, rows)
    ours.update({f"model.aux.{k}": v for k, v in head.items()})
    return payload.finetune_payload(cfg, ours, vocab, normalize, f"transformers folder {source}",
                                    float(hf.get("cssl_temperature", 1.0)))


def write_hf(ckpt: dict[str, Any], out: Path) -> list[Path]:
    """Writes ``ckpt`` as a transformers directory; returns the files written."""
    from safetensors.torch import save_file

    cfg = payload.model_config(ckpt, str(out))
    state = payload.pretrainer_state(ckpt)
    vocab = payload.vocabulary(ckpt)
    if vocab is None:
        architecture = "Wav2Vec2ForPreTraining" if payload.has_heads(ckpt) else "Wav2Vec2Model"
        config = config_to_hf(cfg, architecture, 32, 0, ckpt["config"].get("loss"))
    else:
        architecture = "Wav2Vec2ForCTC"
        config = config_to_hf(cfg, architecture, len(vocab), vocab.blank, ckpt["config"].get("loss"))
        config["cssl_temperature"] = float(ckpt.get("temperature", 1.0))
    theirs = rename(state, HF, to_peer=True, source=str(out))
    if architecture == "Wav2Vec2Model":
        theirs = {k[len("wav2vec2."):]: v for k, v in theirs.items()}
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "config.json", out / "model.safetensors", out / "preprocessor_config.json"]
    atomic_write_json(written[0], config)
    tensors = {k: v.contiguous() for k, v in theirs.items()}
    atomic_write(written[1], lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    atomic_write_json(written[2], {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": SAMPLE_RATE,
        "padding_value": 0.0, "padding_side": "right", "do_normalize": payload.normalize_of(ckpt),
        "return_attention_mask": cfg.feature_encoder.norm == "layer_norm",
        "processor_class": "Wav2Vec2Processor" if vocab is not None else None,
    })
    if vocab is not None:
        symbols = export_symbols(vocab)
        written += [out / "vocab.json", out / "tokenizer_config.json", out / "special_tokens_map.json"]
        atomic_write_json(written[3], {s: i for i, s in enumerate(symbols)})
        specials = {"unk_token": symbols[vocab.unk], "pad_token": symbols[vocab.blank], "bos_token": None, "eos_token": None}
        atomic_write_json(written[4], {"tokenizer_class": "Wav2Vec2CTCTokenizer", "word_delimiter_token": symbols[vocab.word_sep],
                                 "do_lower_case": False, "processor_class": "Wav2Vec2Processor", **specials})
        atomic_write_json(written[5], {**{k: v for k, v in specials.items() if v is not None}})
    return written


def _weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / WEIGHTS[0]).is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path / WEIGHTS[0]), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path / WEIGHTS[0]}: not a readable safetensors file ({err}); it may be cut "
                                  "short: copy or convert it again") from None
    if (path / WEIGHTS[1]).is_file():
        try:
            return torch.load(path / WEIGHTS[1], map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"{path / WEIGHTS[1]}: not readable safely ({type(err).__name__}: {err})") from err
    raise CheckpointError(f"{path}: no {' or '.join(WEIGHTS)} beside config.json (sharded weights are not supported)")


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not readable JSON ({err})") from err


def _token(tok: dict[str, Any], key: str, default: str) -> str:
    value = tok.get(key, default)
    return value.get("content", default) if isinstance(value, dict) else (value or default)
