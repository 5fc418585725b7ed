"""Strided 1-D convolution over time-major frames, computed as matrix products over stride blocks.

The local tower's layers have kernel k and stride s with k close to s (10/5, 3/2, 2/2).
Viewing a time-major input (B, T, C) with T a multiple of s as rows of s consecutive
frames, ``blocks`` (B * T / s, s * C), output frame t is

    y[t] = sum_j blocks[t + j, :m_j] @ W_j,    j = 0 .. ceil(k / s) - 1,

where W_j holds the weights of taps j*s .. j*s + m_j / C - 1 and m_j = min(s, k - j*s) * C.
That is one GEMM per j on the whole batch: no im2col copy, no layout change between
layers, and the weight gradient is a GEMM too. On 2 CPU cores it is 1.1-2x faster than
``conv1d`` (oneDNN) forward and backward for these shapes; see
``benchmarks/pretrain_step.py``. Shifting by j rows runs across utterance boundaries in
the last j rows of each utterance: those rows are past every valid output frame of
that utterance (they need input past its end), so the caller crops them.

Notation: B batch, T input frames, C input channels, O output channels, R = B * T / s.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _compute_dtype(x: Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class _BlockConv(torch.autograd.Function):
    """blocks (R, s*C), weight (O, C, k) as in ``nn.Conv1d``, bias (O,) or None -> (R, O).

    The weight is used as tap-major rows (k*C, O); its gradient is returned in the
    parameter's own (O, C, k) layout with plain strides (DDP's gradient buckets expect them).
    """

    @staticmethod
    def forward(ctx, blocks: Tensor, weight: Tensor, bias: Tensor | None, block_width: int) -> Tensor:
        dtype = _compute_dtype(blocks)
        out_channels, in_channels, kernel = weight.shape
        with torch.autocast(blocks.device.type, enabled=False):
            blocks_c = blocks.to(dtype)
            weight_c = weight.to(dtype).permute(2, 1, 0).reshape(kernel * in_channels, out_channels)  # (k*C, O)
            parts = _parts(weight_c.shape[0], block_width)
            start, width = parts[0]
            first = blocks_c[:, :width]
            if bias is not None:
                out = torch.addmm(bias.to(dtype), first, weight_c[start:start + width])
            else:
                out = torch.mm(first, weight_c[start:start + width])
            for shift, (start, width) in enumerate(parts[1:], start=1):
                out[:-shift].addmm_(blocks_c[shift:, :width], weight_c[start:start + width])
        ctx.save_for_backward(blocks_c, weight_c)
        ctx.block_width = block_width
        ctx.has_bias = bias is not None
        ctx.dtypes = (blocks.dtype, weight.dtype)
        ctx.weight_shape = weight.shape
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        blocks, weight = ctx.saved_tensors
        grad = grad.to(blocks.dtype).contiguous()
        parts = _parts(weight.shape[0], ctx.block_width)
        grad_blocks = grad_weight = grad_bias = None
        with torch.autocast(grad.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                start, width = parts[0]
                if width == ctx.block_width:
                    grad_blocks = torch.mm(grad, weight[start:start + width].t())
                else:
                    grad_blocks = grad.new_zeros(blocks.shape)
                    grad_blocks[:, :width] = torch.mm(grad, weight[start:start + width].t())
                for shift, (start, width) in enumerate(parts[1:], start=1):
                    grad_blocks[shift:, :width].addmm_(grad[:-shift], weight[start:start + width].t())
                grad_blocks = grad_blocks.to(ctx.dtypes[0])
            if ctx.needs_input_grad[1]:
                out_channels, in_channels, kernel = ctx.weight_shape
                grad_taps = torch.cat([
                    torch.mm(blocks[shift:, :width].t(), grad[: grad.shape[0] - shift])
                    for shift, (_, width) in enumerate(parts)
                ])  # (k*C, O)
                grad_weight = grad_taps.view(kernel, in_channels, out_channels).permute(2, 1, 0)  # (O, C, k)
                grad_weight = grad_weight.to(ctx.dtypes[1]).contiguous()
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_bias = grad.sum(dim=0).to(ctx.dtypes[1])
        return grad_blocks, grad_weight, grad_bias, None


def _parts(rows: int, block_width: int) -> list[tuple[int, int]]:
    """(first weight row, width) of each shifted GEMM: full blocks, then the remainder."""
    return [(start, min(block_width, rows - start)) for start in range(0, rows, block_width)]


def block_conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    """Time-major strided convolution: x (B, T, C), weight (O, C, k) as in ``nn.Conv1d`` -> (B, T / stride, O).

    T must be a multiple of ``stride``. Output frame t equals ``conv1d`` output frame t for
    every t < (T - k) // stride + 1; later frames are not defined (crop them).
    """
    b, t, c = x.shape
    out_channels, in_channels, kernel = weight.shape
    if in_channels != c:
        raise ValueError(f"input has {c} channels, the weight expects {in_channels}")
    if t % stride:
        raise ValueError(f"input length {t} is not a multiple of the stride {stride}")
    blocks = x.reshape(b * (t // stride), stride * c)  # (R, s*C): s consecutive frames per row
    out = _BlockConv.apply(blocks, weight, bias, stride * c)  # (R, O)
    return out.view(b, t // stride, out_channels)  # (B, T / s, O)
