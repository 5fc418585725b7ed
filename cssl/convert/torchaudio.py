"""torchaudio ``Wav2Vec2Model`` state dicts (``model.state_dict()`` saved with ``torch.save``).

A state dict carries no architecture. cssl writes one beside it, ``NAME.json``: the keyword
arguments of ``torchaudio.models.wav2vec2_model`` (so ``wav2vec2_model(**kwargs)`` rebuilds
the model that ``load_state_dict`` fills), the CTC labels when there is a head, and
whether inputs are normalised. Reading uses that file when present, else the architecture
the caller gives (``model.*`` settings). torchaudio keeps no mask embedding, quantizer or
projections: a file written here holds the towers (and head) only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cssl.convert import payload
from cssl.convert.keymaps import TORCHAUDIO, rename
from cssl.model import ModelConfig
from cssl.model.config import ContextConfig, FeatureEncoderConfig
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import CheckpointError, save_checkpoint
from cssl.utils.io import atomic_write_json


def sidecar(path: Path) -> Path:
    """``NAME.json`` beside ``NAME.pt``."""
    return path.with_suffix(".json")


def kwargs_of(cfg: ModelConfig, aux_num_out: int | None) -> dict[str, Any]:
    """Keyword arguments of ``torchaudio.models.wav2vec2_model`` for our architecture."""
    fe, ctx = cfg.feature_encoder, cfg.context
    return {
        "extractor_mode": fe.norm, "extractor_conv_layer_config": [list(layer) for layer in fe.conv_layers],
        "extractor_conv_bias": fe.bias, "encoder_embed_dim": ctx.embed_dim,
        "encoder_projection_dropout": ctx.dropout_input, "encoder_pos_conv_kernel": ctx.pos_conv_kernel,
        "encoder_pos_conv_groups": ctx.pos_conv_groups, "encoder_num_layers": ctx.num_layers,
        "encoder_num_heads": ctx.num_heads, "encoder_attention_dropout": ctx.attention_dropout,
        "encoder_ff_interm_features": ctx.ffn_dim, "encoder_ff_interm_dropout": ctx.activation_dropout,
        "encoder_dropout": ctx.dropout, "encoder_layer_norm_first": ctx.layer_norm_first,
        "encoder_layer_drop": ctx.layer_drop, "aux_num_out": aux_num_out,
    }


def config_of(kwargs: dict[str, Any], base: ModelConfig) -> ModelConfig:
    """Our architecture for ``wav2vec2_model`` keyword arguments (pretraining heads from ``base``)."""
    return ModelConfig(
        feature_encoder=FeatureEncoderConfig(
            conv_layers=[tuple(int(v) for v in layer) for layer in kwargs["extractor_conv_layer_config"]],
            norm=kwargs["extractor_mode"], bias=bool(kwargs["extractor_conv_bias"])),
        context=ContextConfig(
            embed_dim=kwargs["encoder_embed_dim"], num_layers=kwargs["encoder_num_layers"],
            num_heads=kwargs["encoder_num_heads"], ffn_dim=kwargs["encoder_ff_interm_features"],
            layer_norm_first=bool(kwargs["encoder_layer_norm_first"]), pos_conv_kernel=kwargs["encoder_pos_conv_kernel"],
            pos_conv_groups=kwargs["encoder_pos_conv_groups"], dropout=kwargs["encoder_dropout"],
            attention_dropout=kwargs["encoder_attention_dropout"], activation_dropout=kwargs["encoder_ff_interm_dropout"],
            dropout_input=kwargs["encoder_projection_dropout"], layer_drop=kwargs["encoder_layer_drop"]),
        quantizer=base.quantizer, mask=base.mask, final_dim=base.final_dim,
        dropout_features=base.dropout_features, feature_grad_scale=base.feature_grad_scale,
    )


def read_torchaudio(path: Path, state: dict[str, torch.Tensor], config: ModelConfig | None) -> dict[str, Any]:
    """The cssl checkpoint dict of a torchaudio state dict (architecture from ``NAME.json`` or ``config``)."""
    source = str(path)
    side = sidecar(path)
    meta: dict[str, Any] = {}
    if side.is_file():
        meta = json.loads(side.read_text(encoding="utf-8"))
        config = config_of(meta["wav2vec2_model"], config or ModelConfig())
    elif config is None:
        raise CheckpointError(f"{source}: a plain state dict carries no architecture; give its model config "
                              f"(model=configs/model/base.yaml or model.* settings) or put {side.name} beside it")
    ours = rename(state, TORCHAUDIO, to_peer=False, source=source)
    normalize = bool(meta.get("normalize", False))
    if "model.aux.weight" in ours and meta.get("labels"):
        vocab = Vocabulary(tuple(meta["labels"]))
        return payload.finetune_payload(config, ours, vocab, normalize, f"torchaudio state dict {source}")
    ours = {k: v for k, v in ours.items() if not k.startswith("model.aux.")}
    return payload.pretrain_payload(config, ours, normalize, f"torchaudio state dict {source}")


def write_torchaudio(ckpt: dict[str, Any], out: Path) -> list[Path]:
    """Writes the towers (and CTC head) as a torchaudio state dict with its ``NAME.json``; returns both paths."""
    cfg = payload.model_config(ckpt, str(out))
    state = payload.pretrainer_state(ckpt)
    towers = {k: v for k, v in state.items() if k.startswith("model.") and k != "model.mask_embedding"}
    theirs = rename(towers, TORCHAUDIO, to_peer=True, source=str(out))
    vocab = payload.vocabulary(ckpt)
    meta = {"wav2vec2_model": kwargs_of(cfg, len(vocab) if vocab else None),
            "labels": list(vocab.symbols) if vocab else None, "normalize": payload.normalize_of(ckpt)}
    save_checkpoint(out, theirs)
    atomic_write_json(sidecar(out), meta)
    return [out, sidecar(out)]
