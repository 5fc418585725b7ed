"""fairseq2 wav2vec 2.0 checkpoints: the ``wav2vec2`` model family (``Wav2Vec2Model``, quantizer,
``final_target_proj``, ``final_proj`` and the mask embedding kept).

A fairseq2 model is a checkpoint file and an asset card, a YAML file that names the model
family, an architecture (``model_arch``: ``base``, ``large``, ``large_lv60k``) and
``model_config`` overrides of it, and where the checkpoint is (``checkpoint``, relative to the
card). cssl writes ``NAME.pt`` (``{"model": state dict}`` under fairseq2's parameter names)
and the card ``NAME.yaml`` beside it, with the whole configuration spelled out; with the
card's folder in ``FAIRSEQ2_USER_ASSET_DIR``, ``fairseq2.models.load_model("NAME")`` loads
it. Reading takes such a file (``{"model": ...}`` or a bare state dict) with its card beside
it, or with the architecture given (``model.*`` settings) when there is none.

What fairseq2 has no field for rides along in the card under ``cssl_model`` (the dropout on
the quantizer's input, activation checkpointing, input normalisation), so cssl -> fairseq2 ->
cssl is exact. fairseq2 uses one dropout (``first_pass_dropout_p``) both
after the feature projection and on the quantizer's input; cssl has two
(``context.dropout_input``, ``dropout_features``): the first is written, the second kept in
``cssl_model``. fairseq2's CTC models (``wav2vec2_asr``) carry their vocabulary in a separate
tokenizer asset (a SentencePiece model) and are not read or written here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from cssl.convert import payload
from cssl.convert.keymaps import FAIRSEQ2, FAIRSEQ2_GROUP_NORM, FAIRSEQ2_POST_NORM, Rule, rename, to_legacy_weight_norm
from cssl.model import ModelConfig
from cssl.model.config import ContextConfig, FeatureEncoderConfig, MaskConfig, QuantizerConfig
from cssl.train.checkpoint import CheckpointError, save_checkpoint
from cssl.utils.io import atomic_write_text

FAMILY = "wav2vec2"
PREFIX = "encoder_frontend."
"""Every fairseq2 wav2vec2 state dict has parameters under this name."""

BASE: dict[str, Any] = {
    "encoder_config": {
        "model_dim": 768, "max_seq_len": 4096, "feature_dim": 512, "use_fbank": False,
        "first_pass_dropout_p": 0.0, "layer_norm_features": True,
        "feature_extractor_layer_descs": [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2,
        "feature_extractor_bias": False, "feature_extractor_layer_norm_convs": False, "feature_grad_scale": 0.1,
        "pos_encoder_type": "conv", "pos_encoder_depth": 1, "pos_conv_kernel_size": 128, "num_pos_conv_groups": 16,
        "use_conformer": False, "num_encoder_layers": 12, "num_encoder_attn_heads": 12, "ffn_inner_dim": 3072,
        "dropout_p": 0.1, "attn_dropout_p": 0.1, "ffn_inner_dropout_p": 0.0, "layer_drop_p": 0.05,
        "norm_order": "POST",
    },
    "final_dim": 256, "final_proj_bias": True, "quantizer_encoder_grad": True,
    "temporal_mask_span_len": 10, "max_temporal_mask_prob": 0.69, "min_num_temporal_mask_spans": 2,
    "quantized_dim": 256, "num_codebooks": 2, "num_codebook_entries": 320,
    "codebook_sampling_temperature": [2.0, 0.5, 0.999995], "num_distractors": 100, "logit_temp": 0.1,
}
"""fairseq2 0.8's ``Wav2Vec2Config()`` (its ``base`` architecture)."""

ARCHS: dict[str, dict[str, Any]] = {
    "base": {},
    "large": {"encoder_config": {"model_dim": 1024, "num_encoder_layers": 24, "num_encoder_attn_heads": 16,
                                 "ffn_inner_dim": 4096, "dropout_p": 0.0, "layer_drop_p": 0.2},
              "quantized_dim": 768, "final_dim": 768},
    "large_lv60k": {"encoder_config": {"model_dim": 1024, "num_encoder_layers": 24, "num_encoder_attn_heads": 16,
                                       "ffn_inner_dim": 4096, "dropout_p": 0.0, "layer_drop_p": 0.0,
                                       "layer_norm_features": False, "feature_extractor_bias": True,
                                       "feature_extractor_layer_norm_convs": True, "norm_order": "PRE"},
                    "quantized_dim": 768, "final_dim": 768, "codebook_sampling_temperature": [2.0, 0.1, 0.999995]},
}
"""fairseq2's registered wav2vec2 architectures, as overrides of :data:`BASE`."""


def card_path(path: Path) -> Path:
    """The asset card ``NAME.yaml`` beside ``NAME.pt``."""
    return path.with_suffix(".yaml")


def is_fairseq2(raw: dict[str, Any]) -> bool:
    """A fairseq2 wav2vec2 checkpoint: ``{"model": state}`` or a bare state dict under fairseq2's names."""
    state = raw.get("model", raw)
    return isinstance(state, dict) and any(isinstance(k, str) and k.startswith(PREFIX) for k in state)


def rules(cfg: ModelConfig) -> tuple[Rule, ...]:
    """The parameter-name table for this architecture (its variants first)."""
    variants: tuple[Rule, ...] = ()
    if cfg.feature_encoder.norm == "group_norm":
        variants += FAIRSEQ2_GROUP_NORM
    if not cfg.context.layer_norm_first:
        variants += FAIRSEQ2_POST_NORM
    return variants + FAIRSEQ2


def resolve(card: dict[str, Any], source: str) -> dict[str, Any]:
    """The whole ``Wav2Vec2Config`` of an asset card: its ``model_arch`` with ``model_config`` over it."""
    if card.get("model_family", FAMILY) != FAMILY:
        raise CheckpointError(f"{source}: model_family {card.get('model_family')!r}; cssl reads fairseq2's "
                              f"{FAMILY!r} family (not wav2vec2_asr, HuBERT, w2v-BERT or others)")
    arch = card.get("model_arch", "base")
    if arch not in ARCHS:
        raise CheckpointError(f"{source}: model_arch {arch!r} is not one of fairseq2's wav2vec2 architectures "
                              f"({', '.join(ARCHS)})")
    config = _merge(BASE, ARCHS[arch])
    for key in ("model_config", "model_config_overrides", "model_config_override"):
        if isinstance(card.get(key), dict):
            return _merge(config, card[key], source)
    return config


def config_from_fairseq2(f2: dict[str, Any], extra: dict[str, Any], source: str) -> ModelConfig:
    """Our architecture for a whole fairseq2 ``Wav2Vec2Config`` dict (``extra``: the card's ``cssl_model``)."""
    enc = f2["encoder_config"]
    refused = {"use_fbank": True, "use_conformer": True}
    for key, value in refused.items():
        if enc.get(key) == value:
            raise CheckpointError(f"{source}: encoder_config.{key}={value}; cssl reads the wav2vec 2.0 Transformer "
                                  "over waveforms")
    if enc["pos_encoder_type"] != "conv" or enc["pos_encoder_depth"] != 1:
        raise CheckpointError(f"{source}: pos_encoder_type={enc['pos_encoder_type']!r}, pos_encoder_depth="
                              f"{enc['pos_encoder_depth']}; cssl reads one convolutional position encoder")
    norm_order = str(enc["norm_order"]).upper()
    if norm_order not in ("POST", "PRE"):
        raise CheckpointError(f"{source}: norm_order={enc['norm_order']!r}; cssl reads POST and PRE")
    pre = norm_order == "PRE"
    if bool(enc["layer_norm_features"]) == pre:
        raise CheckpointError(f"{source}: layer_norm_features={enc['layer_norm_features']} with norm_order={norm_order}; "
                              "cssl has the encoder layer norm before the layers (POST) or after them (PRE), not both or none")
    layers = [tuple(int(v) for v in layer) for layer in enc["feature_extractor_layer_descs"]]
    if layers[-1][0] != enc["feature_dim"]:
        raise CheckpointError(f"{source}: feature_dim={enc['feature_dim']} but the last convolution has {layers[-1][0]} channels")
    defaults = ModelConfig()
    return ModelConfig(
        feature_encoder=FeatureEncoderConfig(
            conv_layers=layers, bias=bool(enc["feature_extractor_bias"]),
            norm="layer_norm" if enc["feature_extractor_layer_norm_convs"] else "group_norm"),
        context=ContextConfig(
            embed_dim=enc["model_dim"], num_layers=enc["num_encoder_layers"], num_heads=enc["num_encoder_attn_heads"],
            ffn_dim=enc["ffn_inner_dim"], layer_norm_first=pre, pos_conv_kernel=enc["pos_conv_kernel_size"],
            pos_conv_groups=enc["num_pos_conv_groups"], dropout=enc["dropout_p"],
            attention_dropout=enc["attn_dropout_p"], activation_dropout=enc["ffn_inner_dropout_p"],
            dropout_input=enc["first_pass_dropout_p"], layer_drop=enc["layer_drop_p"]),
        quantizer=QuantizerConfig(groups=f2["num_codebooks"], entries=f2["num_codebook_entries"],
                                  dim=f2["quantized_dim"],
                                  temperature=tuple(float(t) for t in f2["codebook_sampling_temperature"])),
        mask=MaskConfig(prob=f2["max_temporal_mask_prob"], span=f2["temporal_mask_span_len"],
                        min_spans=f2["min_num_temporal_mask_spans"]),
        final_dim=f2["final_dim"],
        dropout_features=extra.get("dropout_features", enc["first_pass_dropout_p"]),
        feature_grad_scale=enc["feature_grad_scale"],
        checkpoint_activations=extra.get("checkpoint_activations", defaults.checkpoint_activations),
    )


def config_to_fairseq2(cfg: ModelConfig, loss: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole fairseq2 ``Wav2Vec2Config`` dict for our architecture."""
    fe, ctx, q, m = cfg.feature_encoder, cfg.context, cfg.quantizer, cfg.mask
    loss = loss or {}
    return _merge(BASE, {
        "encoder_config": {
            "model_dim": ctx.embed_dim, "feature_dim": fe.conv_layers[-1][0],
            "first_pass_dropout_p": ctx.dropout_input, "layer_norm_features": not ctx.layer_norm_first,
            "feature_extractor_layer_descs": [list(layer) for layer in fe.conv_layers],
            "feature_extractor_bias": fe.bias, "feature_extractor_layer_norm_convs": fe.norm == "layer_norm",
            "feature_grad_scale": cfg.feature_grad_scale, "pos_conv_kernel_size": ctx.pos_conv_kernel,
            "num_pos_conv_groups": ctx.pos_conv_groups, "num_encoder_layers": ctx.num_layers,
            "num_encoder_attn_heads": ctx.num_heads, "ffn_inner_dim": ctx.ffn_dim, "dropout_p": ctx.dropout,
            "attn_dropout_p": ctx.attention_dropout, "ffn_inner_dropout_p": ctx.activation_dropout,
            "layer_drop_p": ctx.layer_drop, "norm_order": "PRE" if ctx.layer_norm_first else "POST",
        },
        "final_dim": cfg.final_dim, "temporal_mask_span_len": m.span, "max_temporal_mask_prob": m.prob,
        "min_num_temporal_mask_spans": m.min_spans, "quantized_dim": q.dim, "num_codebooks": q.groups,
        "num_codebook_entries": q.entries, "codebook_sampling_temperature": list(q.temperature),
        "num_distractors": loss.get("num_distractors", BASE["num_distractors"]),
        "logit_temp": loss.get("logit_temperature", BASE["logit_temp"]),
    })


def read_fairseq2(path: Path, raw: dict[str, Any], config: ModelConfig | None = None) -> dict[str, Any]:
    """The cssl checkpoint dict of a fairseq2 wav2vec2 checkpoint (architecture from its card or ``config``)."""
    import yaml

    source = str(path)
    card_file = card_path(path)
    extra: dict[str, Any] = {}
    loss: dict[str, Any] = {}
    normalize = False
    if card_file.is_file():
        card = yaml.safe_load(card_file.read_text(encoding="utf-8")) or {}
        f2 = resolve(card, str(card_file))
        extra = dict(card.get("cssl_model") or {})
        normalize = bool(extra.pop("normalize", False))
        cfg = config_from_fairseq2(f2, extra, str(card_file))
        loss = {"num_distractors": f2["num_distractors"], "logit_temperature": f2["logit_temp"]}
    elif config is not None:
        cfg = config
    else:
        raise CheckpointError(f"{source}: a fairseq2 checkpoint without its asset card {card_file.name}; put the card "
                              "beside it or give the architecture (model=configs/model/base.yaml or model.* settings)")
    state = {k: v for k, v in raw.get("model", raw).items() if k != "quantizer.num_updates"}
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if any(k.startswith(("final_proj.", "encoder.")) for k in state) and "quantizer.entries" not in state:
        raise CheckpointError(f"{source}: a fairseq2 model without a quantizer (a wav2vec2_asr CTC model?); cssl "
                              "reads fairseq2's wav2vec2 pretraining models, and wav2vec2_asr models through fairseq")
    projection = PREFIX + "model_dim_proj.weight"
    if projection not in state:  # fairseq2 leaves the projection out when the widths agree
        width = cfg.context.embed_dim
        state[projection] = torch.eye(width)
        state[PREFIX + "model_dim_proj.bias"] = torch.zeros(width)
    ours = rename(state, rules(cfg), to_peer=False, source=source)
    return payload.pretrain_payload(cfg, ours, normalize, f"fairseq2 checkpoint {source}", loss or None)


def write_fairseq2(ckpt: dict[str, Any], out: Path) -> list[Path]:
    """Writes a pretraining checkpoint dict as fairseq2's ``NAME.pt`` and asset card ``NAME.yaml``."""
    import yaml

    source = str(out)
    if ckpt.get("kind") != "pretrain" or not payload.has_heads(ckpt):
        raise CheckpointError(f"{source}: fairseq2's wav2vec2 family needs a pretraining model with its quantizer and "
                              "projections; a fine-tuned model goes out as --to hf or --to torchaudio")
    cfg = payload.model_config(ckpt, source)
    state = payload.pretrainer_state(ckpt)
    theirs = to_legacy_weight_norm(rename(state, rules(cfg), to_peer=True, source=source))
    if cfg.feature_encoder.conv_layers[-1][0] == cfg.context.embed_dim:
        weight, bias = theirs.pop(PREFIX + "model_dim_proj.weight"), theirs.pop(PREFIX + "model_dim_proj.bias")
        if not (torch.equal(weight, torch.eye(weight.shape[0])) and not bias.any()):
            raise CheckpointError(f"{source}: fairseq2 has no feature projection when the local features are as wide "
                                  f"as the Transformer ({weight.shape[0]}); this model's projection is not the identity")
    theirs["quantizer.num_updates"] = torch.tensor(int(ckpt.get("step", 0)), dtype=torch.int64)
    loss = ckpt.get("config", {}).get("loss")
    card = {
        "name": out.stem, "model_family": FAMILY, "model_config": config_to_fairseq2(cfg, loss),
        "checkpoint": out.name,
        "cssl_model": {"dropout_features": cfg.dropout_features, "checkpoint_activations": cfg.checkpoint_activations,
                       "normalize": payload.normalize_of(ckpt)},
    }
    save_checkpoint(out, {"model": theirs})
    atomic_write_text(card_path(out), yaml.safe_dump(card, sort_keys=False))
    return [out, card_path(out)]


def _merge(base: dict[str, Any], over: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """``base`` with ``over``'s values (nested dicts merged); a key ``base`` lacks is an error when ``source`` is given."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key not in out and source is not None:
            raise CheckpointError(f"{source}: model_config key {key!r} is not a fairseq2 Wav2Vec2Config field")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, source)
        else:
            out[key] = copy.deepcopy(value)
    return out
