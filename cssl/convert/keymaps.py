"""Parameter names of the peers, as data: one table of (cssl name, peer name) templates each.

cssl names are those of :class:`~cssl.model.Wav2Vec2Pretrainer` (towers under ``model.``,
torchaudio's layout; the CTC head of a fine-tuned model is ``model.aux``). In a template
``{n}`` stands for a layer index, ``{p}`` for ``weight`` or ``bias`` and ``{x}`` for any
dotted tail; the first rule that matches a name wins, in either direction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import torch

from cssl.train.checkpoint import CheckpointError

Rule = tuple[str, str]

HF: tuple[Rule, ...] = (
    ("model.mask_embedding", "wav2vec2.masked_spec_embed"),
    ("model.feature_extractor.{x}", "wav2vec2.feature_extractor.{x}"),
    ("model.encoder.feature_projection.{x}", "wav2vec2.feature_projection.{x}"),
    ("model.encoder.transformer.{x}", "wav2vec2.encoder.{x}"),
    ("quantizer.codebook", "quantizer.codevectors"),
    ("quantizer.weight_proj.{p}", "quantizer.weight_proj.{p}"),
    ("project_q.{p}", "project_q.{p}"),
    ("final_proj.{p}", "project_hid.{p}"),
    ("model.aux.{p}", "lm_head.{p}"),
)
"""transformers ``Wav2Vec2ForPreTraining`` / ``Wav2Vec2ForCTC`` (``Wav2Vec2Model`` lacks the ``wav2vec2.`` prefix)."""

FAIRSEQ: tuple[Rule, ...] = (
    ("model.mask_embedding", "mask_emb"),
    ("model.feature_extractor.conv_layers.{n}.conv.{p}", "feature_extractor.conv_layers.{n}.0.{p}"),
    ("model.feature_extractor.conv_layers.0.layer_norm.{p}", "feature_extractor.conv_layers.0.2.{p}"),  # group norm
    ("model.feature_extractor.conv_layers.{n}.layer_norm.{p}", "feature_extractor.conv_layers.{n}.2.1.{p}"),  # layer norm
    ("model.encoder.feature_projection.layer_norm.{p}", "layer_norm.{p}"),
    ("model.encoder.feature_projection.projection.{p}", "post_extract_proj.{p}"),
    ("model.encoder.transformer.pos_conv_embed.conv.{x}", "encoder.pos_conv.0.{x}"),
    ("model.encoder.transformer.layers.{n}.attention.{x}", "encoder.layers.{n}.self_attn.{x}"),
    ("model.encoder.transformer.layers.{n}.layer_norm.{p}", "encoder.layers.{n}.self_attn_layer_norm.{p}"),
    ("model.encoder.transformer.layers.{n}.feed_forward.intermediate_dense.{p}", "encoder.layers.{n}.fc1.{p}"),
    ("model.encoder.transformer.layers.{n}.feed_forward.output_dense.{p}", "encoder.layers.{n}.fc2.{p}"),
    ("model.encoder.transformer.layers.{n}.final_layer_norm.{p}", "encoder.layers.{n}.final_layer_norm.{p}"),
    ("model.encoder.transformer.layer_norm.{p}", "encoder.layer_norm.{p}"),
    ("quantizer.codebook", "quantizer.vars"),
    ("quantizer.weight_proj.{p}", "quantizer.weight_proj.{p}"),
    ("project_q.{p}", "project_q.{p}"),
    ("final_proj.{p}", "final_proj.{p}"),
    ("model.aux.{p}", "proj.{p}"),
)
"""fairseq ``Wav2Vec2Model`` (a CTC model's ``w2v_encoder.`` prefix is taken off first: ``w2v_model.*``, ``proj``)."""

FAIRSEQ2: tuple[Rule, ...] = (
    ("model.mask_embedding", "masker.temporal_mask_embed"),
    ("model.feature_extractor.conv_layers.{n}.conv.{p}", "encoder_frontend.feature_extractor.layers.{n}.conv.{p}"),
    ("model.feature_extractor.conv_layers.{n}.layer_norm.{p}", "encoder_frontend.feature_extractor.layers.{n}.layer_norm.{p}"),
    ("model.encoder.feature_projection.layer_norm.{p}", "encoder_frontend.post_extract_layer_norm.{p}"),
    ("model.encoder.feature_projection.projection.{p}", "encoder_frontend.model_dim_proj.{p}"),
    ("model.encoder.transformer.pos_conv_embed.conv.{x}", "encoder_frontend.pos_encoder.conv.{x}"),
    ("model.encoder.transformer.layers.{n}.attention.out_proj.{p}", "encoder.layers.{n}.self_attn.output_proj.{p}"),
    ("model.encoder.transformer.layers.{n}.attention.{x}", "encoder.layers.{n}.self_attn.{x}"),
    ("model.encoder.transformer.layers.{n}.layer_norm.{p}", "encoder.layers.{n}.self_attn_layer_norm.{p}"),
    ("model.encoder.transformer.layers.{n}.feed_forward.intermediate_dense.{p}", "encoder.layers.{n}.ffn.inner_proj.{p}"),
    ("model.encoder.transformer.layers.{n}.feed_forward.output_dense.{p}", "encoder.layers.{n}.ffn.output_proj.{p}"),
    ("model.encoder.transformer.layers.{n}.final_layer_norm.{p}", "encoder.layers.{n}.ffn_layer_norm.{p}"),
    ("model.encoder.transformer.layer_norm.{p}", "encoder.layer_norm.{p}"),  # pre-norm: after the layers
    ("quantizer.codebook", "quantizer.entries"),
    ("quantizer.weight_proj.{p}", "quantizer.entry_proj.{p}"),
    ("project_q.{p}", "final_target_proj.{p}"),
    ("final_proj.{p}", "final_proj.{p}"),
)
"""fairseq2 ``wav2vec2`` models (``Wav2Vec2Model``); the two variants below go first where they apply."""

FAIRSEQ2_GROUP_NORM: tuple[Rule, ...] = (
    ("model.feature_extractor.conv_layers.0.layer_norm.{p}", "encoder_frontend.feature_extractor.layers.0.group_norm.{p}"),
)
"""fairseq2 with the group-normed first convolution (``feature_extractor_layer_norm_convs: false``)."""

FAIRSEQ2_POST_NORM: tuple[Rule, ...] = (
    ("model.encoder.transformer.layer_norm.{p}", "encoder_frontend.layer_norm.{p}"),
)
"""fairseq2 post-norm Transformers: the encoder's layer norm sits in the frontend, before the layers."""

TORCHAUDIO: tuple[Rule, ...] = (("model.{x}", "{x}"),)
"""torchaudio ``Wav2Vec2Model.state_dict()``: our tower names without the prefix (no mask embedding there)."""

LEGACY_WEIGHT_NORM = {".weight_g": ".parametrizations.weight.original0",
                      ".weight_v": ".parametrizations.weight.original1"}
"""Older files store the position convolution's weight norm as ``weight_g``/``weight_v``."""

def to_legacy_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with weight norms stored as ``weight_g``/``weight_v`` (for peers that keep the old names)."""
    out = {}
    for name, value in state.items():
        for old, new in LEGACY_WEIGHT_NORM.items():
            if name.endswith(new):
                name = name[: -len(new)] + old
        out[name] = value
    return out


_TOKENS = {"n": r"(?P<n>\d+)", "p": r"(?P<p>weight|bias)", "x": r"(?P<x>[\w.]+)"}


@lru_cache(maxsize=None)
def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for token, regex in _TOKENS.items():
        pattern = pattern.replace(re.escape("{" + token + "}"), regex)
    return re.compile(pattern + "$")


def map_name(name: str, rules: Iterable[Rule], to_peer: bool) -> str | None:
    """The peer name of cssl ``name`` (``to_peer``) or the cssl name of a peer's; None when no rule matches."""
    for ours, theirs in rules:
        source, target = (ours, theirs) if to_peer else (theirs, ours)
        match = _compile(source).match(name)
        if match:
            return target.format(**match.groupdict())
    return None


def rename(state: Mapping[str, torch.Tensor], rules: Iterable[Rule], to_peer: bool, source: str) -> dict[str, torch.Tensor]:
    """``state`` under the other side's names; a name no rule maps is an error naming it and ``source``."""
    rules = tuple(rules)
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not to_peer:
            for old, new in LEGACY_WEIGHT_NORM.items():
                if name.endswith(old):
                    name = name[: -len(old)] + new
        mapped = map_name(name, rules, to_peer)
        if mapped is None:
            raise CheckpointError(f"{source}: parameter '{name}' has no counterpart; is this a wav2vec 2.0 model?")
        out[mapped] = value
    return out
