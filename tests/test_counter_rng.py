"""The counter-based generator: the published hash, uniformity, independence, any device."""

from __future__ import annotations

import pytest
import torch

from cssl.kernels.counter_rng import below, hash32, uniform
from cssl.model.masking import gumbel_noise


def lowbias32(x: int) -> int:
    """Chris Wellons' lowbias32, in plain Python integers (the reference)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_hash_matches_the_reference_on_every_bit() -> None:
    seeds = [0, 1, 12345, (1 << 62) + 7, (1 << 63) - 1]
    counters = [0, 1, 2, 999, (1 << 32) - 1]
    for seed in seeds:
        key = lowbias32(lowbias32((seed & 0xFFFFFFFF) ^ lowbias32(seed >> 32)) ^ 3)
        expected = [lowbias32(key ^ c) for c in counters]
        got = hash32(torch.tensor(seed), 3, torch.tensor(counters)).tolist()
        assert got == expected, seed


def test_uniform_is_uniform_and_streams_are_independent() -> None:
    seeds = torch.arange(200)[:, None]
    counters = torch.arange(1000)[None, :]
    u = uniform(seeds, 1, counters)
    assert u.shape == (200, 1000) and float(u.min()) > 0 and float(u.max()) < 1
    assert float(u.mean()) == pytest.approx(0.5, abs=0.002)
    assert float(u.var()) == pytest.approx(1 / 12, rel=0.01)
    histogram = torch.histc(u, bins=20, min=0, max=1)
    assert float(histogram.min()) > 0.97 * 10_000 and float(histogram.max()) < 1.03 * 10_000
    v = uniform(seeds, 2, counters)
    corr = torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1]
    assert abs(float(corr)) < 0.01
    neighbours = torch.corrcoef(torch.stack([u[:, :-1].flatten(), u[:, 1:].flatten()]))[0, 1]
    assert abs(float(neighbours)) < 0.01  # consecutive counters
    assert torch.equal(u, uniform(seeds, 1, counters))


def test_below_stays_in_range_and_covers_it() -> None:
    draws = below(torch.tensor(7), 1, torch.arange(70_000), torch.tensor(7))
    counts = torch.bincount(draws, minlength=7)
    assert counts.numel() == 7 and int(counts.min()) > 9_500 and int(counts.max()) < 10_500


def test_gumbel_noise_has_the_gumbel_mean_and_is_finite() -> None:
    mask = torch.ones(4, 500, dtype=torch.bool)
    noise = gumbel_noise(mask, 2, 32, torch.tensor([1, 2, 3, 4]))
    assert noise.shape == (2000, 2, 32) and torch.isfinite(noise).all()
    assert float(noise.mean()) == pytest.approx(0.5772, abs=0.01)  # Euler-Mascheroni constant
    assert float(noise.var()) == pytest.approx(torch.pi**2 / 6, rel=0.02)


@pytest.mark.gpu
def test_the_same_numbers_on_a_gpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    seeds, counters = torch.arange(50)[:, None], torch.arange(300)[None, :]
    assert torch.equal(hash32(seeds, 4, counters), hash32(seeds.cuda(), 4, counters.cuda()).cpu())
    assert torch.equal(uniform(seeds, 4, counters), uniform(seeds.cuda(), 4, counters.cuda()).cpu())
