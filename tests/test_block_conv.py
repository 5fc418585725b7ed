"""Block convolution equals conv1d on the frames it defines, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cssl.kernels.block_conv import block_conv


@pytest.mark.parametrize(
    ("kernel", "stride", "channels", "bias"),
    [(10, 5, 1, False), (3, 2, 4, True), (2, 2, 3, False), (1, 2, 2, True), (7, 2, 3, True), (4, 4, 2, False)],
)
def test_matches_conv1d_and_its_gradients(kernel: int, stride: int, channels: int, bias: bool) -> None:
    gen = torch.Generator().manual_seed(kernel * 10 + stride)
    batch, length, out_channels = 3, 12 * stride, 5
    x = torch.randn(batch, length, channels, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(out_channels, channels, kernel, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(out_channels, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    frames = (length - kernel) // stride + 1

    ours = block_conv(x, weight, b, stride)
    assert ours.shape == (batch, length // stride, out_channels)
    ref = F.conv1d(x.transpose(1, 2), weight, b, stride=stride).transpose(1, 2)  # (B, frames, O)
    torch.testing.assert_close(ours[:, :frames], ref)

    grad = torch.randn(batch, frames, out_channels, generator=gen, dtype=torch.float64)
    inputs = [x, weight] + ([b] if bias else [])
    got = torch.autograd.grad(ours[:, :frames], inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_gradcheck() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: block_conv(*a, 2)[:, :3], (x, weight, bias))


def test_autocast_runs_in_bf16_and_returns_float_gradients() -> None:
    x = torch.randn(2, 16, 4, requires_grad=True)
    weight = torch.randn(6, 4, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block_conv(x, weight, None, 2)
    assert out.dtype == torch.bfloat16
    ref = F.conv1d(x.transpose(1, 2), weight, None, stride=2).transpose(1, 2)
    torch.testing.assert_close(out[:, :7].float(), ref, atol=0.1, rtol=0.02)
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32


def test_rejects_lengths_that_are_not_stride_multiples() -> None:
    with pytest.raises(ValueError, match="multiple of the stride"):
        block_conv(torch.randn(1, 9, 2), torch.randn(3, 2, 3), None, 2)
    with pytest.raises(ValueError, match="channels"):
        block_conv(torch.randn(1, 8, 2), torch.randn(3, 5, 3), None, 2)
