"""Counter-based random numbers: a pure integer hash of (seed, stream, counter), on any device.

Each random number a pretraining or fine-tuning batch needs (span starts, distractors,
Gumbel noise) is a function of its utterance's seed, of what it is for (a stream id)
and of its position (a counter), not of the order in which numbers are drawn. So a whole
batch draws in one vectorised call on the device that holds it, and an utterance gets the
same numbers on a CPU or a GPU, in any batch, on any process.

The hash is Chris Wellons' ``lowbias32`` (xor-shift / multiply rounds on 32 bits), written
with int64 tensor arithmetic that never overflows (a 32-bit product is formed from 16-bit
halves), so every device computes the same bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF
_MUL1, _MUL2 = 0x7FEB352D, 0x846CA68B

STREAM_SPANS = 1
"""Span starts of the time mask (and the span count's rounding)."""
STREAM_DISTRACTORS = 2
"""Same-utterance distractors."""
STREAM_CROSS = 3
"""Distractors from other utterances."""
STREAM_GUMBEL = 4
"""Gumbel noise of the quantizer."""
STREAM_CHANNELS = 5
"""Span starts of the channel mask (fine-tuning)."""


def _mul32(x: Tensor, m: int) -> Tensor:
    """(x * m) mod 2^32 for 0 <= x < 2^32, without int64 overflow."""
    lo, hi = x & 0xFFFF, x >> 16
    return ((((hi * m) & _M32) << 16) + lo * m) & _M32


def _mix(x: Tensor) -> Tensor:
    """lowbias32: a bijection of 32-bit values whose output bits depend on every input bit."""
    x = x ^ (x >> 16)
    x = _mul32(x, _MUL1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MUL2)
    return x ^ (x >> 16)


def hash32(seeds: Tensor, stream: int, counters: Tensor) -> Tensor:
    """32-bit hashes (int64 tensor) of each seed (broadcast against ``counters``), a stream and counters.

    ``seeds`` are 63-bit (``mix_seed``); both halves enter the hash.
    """
    seeds = seeds.to(torch.int64)
    key = _mix(_mix((seeds & _M32) ^ _mix(seeds >> 32)) ^ stream)
    return _mix(key ^ (counters.to(torch.int64) & _M32))


def uniform(seeds: Tensor, stream: int, counters: Tensor) -> Tensor:
    """Floats uniform on (0, 1) (24 bits: never 0 or 1), shaped as ``seeds`` broadcast with ``counters``."""
    return ((hash32(seeds, stream, counters) >> 8).to(torch.float32) + 0.5) * 2.0**-24


def below(seeds: Tensor, stream: int, counters: Tensor, bound: Tensor) -> Tensor:
    """Integers uniform on [0, bound) (``bound`` >= 1, broadcast; bias below 2^-24 * bound)."""
    u = uniform(seeds, stream, counters)
    return torch.minimum((u * bound).to(torch.int64), bound.to(torch.int64) - 1)
