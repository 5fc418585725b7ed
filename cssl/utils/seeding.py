"""Deterministic seeds derived from several integers (run seed, epoch or step, item index)."""

from __future__ import annotations

_MASK = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed from ``values`` (splitmix64 finaliser): neighbouring inputs give unrelated seeds."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        x ^= x >> 31
        x = x * 0x94D049BB133111EB & _MASK
        x ^= x >> 29
    return x >> 1
