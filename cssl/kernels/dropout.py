"""Dropout whose CPU mask costs one random bit-stream draw instead of a Bernoulli draw per element.

On CPU, ``torch.nn.functional.dropout`` draws one Bernoulli sample per element
(``bernoulli_``, about 9 ns each on a 2-core machine: 11% of a tiny pretraining step)
and saves a float mask for backward. Here the mask comes from 64-bit random integers
read as 16-bit lanes (0.7 ns per element), compared against a threshold: each element
is kept with probability 1 - p', where p' is ``p`` rounded to a multiple of 1/65536,
and survivors are scaled by 1 / (1 - p') so the expectation is exact. Backward saves a
boolean mask (1 byte per element). Draws come from torch's global generator, so seeding
and checkpointed RNG state reproduce them. Other devices use ``F.dropout`` (:mod:`cssl.kernels.switch`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cssl.kernels.switch import cpu_kernels

_LANES = 4  # 16-bit lanes in one 64-bit draw
_LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> tuple[Tensor, float]:
    """A boolean mask of ``shape`` keeping each element with probability 1 - p', and p'."""
    drop_levels = round(p * _LEVELS)
    numel = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((numel + _LANES - 1) // _LANES,), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:numel].view(shape)  # uniform on [-32768, 32767]
    return lanes >= drop_levels - _LEVELS // 2, drop_levels / _LEVELS


class _MaskedScale(torch.autograd.Function):
    """y = x * keep / (1 - p); the gradient uses the same mask and scale."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0).mul_(ctx.scale), None, None


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout of ``x`` with probability ``p`` (identity when not training or p == 0)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if not cpu_kernels(x.device) or p == 1.0:
        return F.dropout(x, p, training=True)
    keep, p_eff = keep_mask(x.shape, p, x.device)
    if p_eff == 0.0:
        return x
    return _MaskedScale.apply(x, keep, 1.0 / (1.0 - p_eff))


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout`` using :func:`dropout` (no parameters: state dicts are unchanged)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
