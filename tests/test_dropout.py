"""The CPU dropout: keep rate, scaling, gradient, and the attention path built on it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cssl.kernels.dropout import Dropout, dropout, keep_mask
from cssl.model.context import attention_with_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_keep_rate_matches_probability(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of the 4 lanes per draw
    keep, p_eff = keep_mask((n,), p)
    assert abs(p_eff - p) <= 0.5 / 65536
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(1 - keep.float().mean().item() - p_eff) < 5 * sigma
    # neighbouring lanes of one 64-bit draw are independent: P(both kept) = (1 - p)^2
    pairs = (keep[0:-1:2] & keep[1::2]).float().mean().item()
    assert abs(pairs - (1 - p_eff) ** 2) < 5 * math.sqrt((1 - p) ** 2 / (n // 2))


def test_expectation_and_gradient() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 1000, requires_grad=True)
    y = dropout(x, 0.25)
    kept = y != 0
    scale = 1 / (1 - 0.25)
    torch.testing.assert_close(y[kept], x[kept] * scale)
    grad = torch.randn_like(y)
    y.backward(grad)
    torch.testing.assert_close(x.grad, torch.where(kept, grad * scale, 0.0))
    # inverted dropout keeps the mean of a constant input
    ones = dropout(torch.ones(2_000_000), 0.25)
    assert abs(ones.mean().item() - 1) < 5 * math.sqrt(0.25 / 0.75 / 2_000_000)


def test_identity_when_evaluating_or_p_zero() -> None:
    x = torch.randn(3, 5)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    module = Dropout(0.3).eval()
    assert module(x) is x
    assert torch.count_nonzero(dropout(x, 1.0)) == 0
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_seeded_draws_repeat() -> None:
    x = torch.randn(10, 300)
    torch.manual_seed(7)
    a = dropout(x, 0.1)
    torch.manual_seed(7)
    b = dropout(x, 0.1)
    assert torch.equal(a, b)


def test_attention_with_dropout_matches_reference_with_same_mask() -> None:
    b, h, t, k = 2, 3, 7, 4
    q, key, v = (torch.randn(b, h, t, k) for _ in range(3))
    key_mask = torch.ones(b, 1, 1, t, dtype=torch.bool)
    key_mask[1, ..., 5:] = False
    torch.manual_seed(3)
    out = attention_with_dropout(q, key, v, key_mask, 0.2)
    torch.manual_seed(3)
    keep, p_eff = keep_mask((b, h, t, t), 0.2)
    scores = (q @ key.transpose(-2, -1)) / math.sqrt(k)
    weights = scores.masked_fill(~key_mask, float("-inf")).softmax(-1) * keep / (1 - p_eff)
    torch.testing.assert_close(out, weights @ v)
    # without dropout the same path is scaled_dot_product_attention
    torch.testing.assert_close(attention_with_dropout(q, key, v, key_mask, 0.0),
                               F.scaled_dot_product_attention(q, key, v, attn_mask=key_mask))
