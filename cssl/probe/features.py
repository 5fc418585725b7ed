"""Frame features of every level of a model, for probing: the local tower, each Transformer
layer, and the quantizer's codes. Pure: tensors in, tensors out, no I/O."""

from __future__ import annotations

import torch
from torch import Tensor

from cssl.model import Wav2Vec2Model
from cssl.model.quantizer import GumbelQuantizer

LOCAL = "local"
"""Name of the local tower's (layer-normed) features: what the quantizer reads."""
CODES = "codes"
"""Name of the quantizer's hard codes, one unit per combination of entries."""


def layer_name(index: int) -> str:
    """Name of Transformer layer ``index`` (1-based)."""
    return f"layer {index}"


@torch.no_grad()
def frame_features(model: Wav2Vec2Model, wave: Tensor, quantizer: GumbelQuantizer | None = None) -> dict[str, Tensor]:
    """Features of one waveform ``(S,)`` by level, each ``(T, D)`` float32 on the CPU; ``codes``
    (with a quantizer) is ``(T,)`` of unit ids ``sum_g code_g * V**g``. The model runs as it is
    (call ``eval()`` first for deterministic features)."""
    out = model.encode(wave.unsqueeze(0))  # (1, S) -> EncoderOutput of (1, T, .)
    features = {LOCAL: out.normed[0].float().cpu()}  # (T, C)
    for i, layer in enumerate(out.layers, 1):
        features[layer_name(i)] = layer[0].float().cpu()  # (T, D)
    if quantizer is not None:
        codes = quantizer(out.normed[0], tau=1.0).codes  # (T, G) hard choices (eval: no Gumbel noise)
        place = quantizer.entries ** torch.arange(quantizer.groups, device=codes.device)  # (G,)
        features[CODES] = (codes * place).sum(dim=1).cpu()  # (T,)
    return features
