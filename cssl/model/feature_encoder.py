"""The local tower: convolutional feature encoder over the raw 16 kHz waveform.

Notation: B batch, S samples, T frames, C channels.

Parameter names follow torchaudio's ``FeatureExtractor`` (``conv_layers.{i}.conv``,
``conv_layers.{i}.layer_norm``) so its state dicts load unchanged. Two differences
in behaviour, both only on padded batches: the BASE group norm takes its statistics
over each utterance's valid frames only (torchaudio includes the padding, so a
padded batch differs from one-by-one), and frames past the valid length are zeroed
after that norm. Input shorter than the receptive field (400 samples for BASE) gives
zero frames instead of a convolution error. The layers compute time-major: on a CPU as
block GEMMs (:mod:`cssl.kernels.block_conv`), elsewhere through ``F.conv1d``
(:mod:`cssl.kernels.switch` chooses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cssl.kernels.block_conv import block_conv
from cssl.kernels.switch import cpu_kernels
from cssl.model.config import FeatureEncoderConfig


class MaskedGroupNorm(nn.GroupNorm):
    """Per-channel normalisation over time (groups == channels) of time-major frames.

    Statistics come from the first ``frames`` frames, or from the frames where ``valid``
    (B, T, 1) is True; all frames are normalised with them.
    """

    def forward(self, x: Tensor, mean: Tensor, var: Tensor, inplace: bool = False) -> Tensor:
        """Normalises x (B, T, C) with float32 statistics mean, var (B, 1, C); the output keeps the input
        dtype, and overwrites x when ``inplace`` (only where no gradient flows through x)."""
        scale = torch.rsqrt(var + self.eps) * self.weight.float()  # (B, 1, C)
        shift = self.bias.float() - mean * scale
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype), out=x if inplace else None)


def frame_moments(x: Tensor, frames: int, valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """Float32 mean and variance over time (B, 1, C) of x (B, T, C), from its first ``frames``
    frames or where ``valid`` (B, T, 1) is True."""
    if valid is None:
        head = x[:, :frames]
        mean = head.mean(dim=1, keepdim=True, dtype=torch.float32)  # two passes: var_mean over
        return mean, (head - mean).square().mean(dim=1, keepdim=True)  # dim 1 is 5x slower
    weight = valid.float()
    count = weight.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1, 1)
    mean = (x * weight).sum(dim=1, keepdim=True) / count  # (B, 1, C)
    return mean, ((x - mean).square() * weight).sum(dim=1, keepdim=True) / count


def window_moments(x: Tensor, conv: nn.Conv1d, frames: int, valid: Tensor | None) -> tuple[Tensor, Tensor]:
    """The moments of :func:`frame_moments` for the output of ``conv`` over x (B, T_in, C_in),
    computed from x: with windows u_t (C_in * k values) of mean m and covariance S, output
    channel c has mean w_c . m + b_c and variance w_c^T S w_c. For the first layer (k * C_in = 10)
    that reads the waveform once instead of the (B, T, C) output three times; float64 inside."""
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    batch = x.shape[0]
    with torch.autocast(x.device.type, enabled=False):
        windows = x.unfold(1, kernel, stride)[:, :frames]  # (B, F, C_in, k), a view
        windows = windows.reshape(batch, frames, -1).double()  # (B, F, D), D = C_in * k
        if valid is None:  # frames >= 1: the encoder pads its input to one receptive field
            centre = windows.mean(dim=1)  # (B, D)
            centred = windows - centre[:, None]
            cov = centred.transpose(1, 2) @ centred / frames  # (B, D, D)
        else:
            weight = valid[:, :frames].double()  # (B, F, 1)
            count = weight.sum(dim=1).clamp(min=1)  # (B, 1)
            centre = (windows * weight).sum(dim=1) / count  # (B, D)
            centred = (windows - centre[:, None]) * weight  # padded frames contribute nothing
            cov = centred.transpose(1, 2) @ centred / count[:, :, None]  # (B, D, D)
        w = conv.weight.reshape(conv.out_channels, -1).double()  # (O, D)
        mean = centre @ w.t()  # (B, O)
        if conv.bias is not None:
            mean = mean + conv.bias.double()
        var = ((w @ cov) * w).sum(dim=-1)  # (B, O): w_c^T S w_c
    return mean[:, None].float(), var[:, None].float()  # (B, 1, O)


class ConvBlock(nn.Module):
    """Strided convolution, optional normalisation, GELU, on time-major frames."""

    _WINDOW_STATS_MAX = 256  # window moments when C_in * k is at most this (a (D, D) covariance)

    def __init__(self, conv: nn.Conv1d, layer_norm: nn.Module | None) -> None:
        super().__init__()
        self.conv = conv
        self.layer_norm = layer_norm

    @property
    def kernel_size(self) -> int:
        return self.conv.kernel_size[0]

    @property
    def stride(self) -> int:
        return self.conv.stride[0]

    def forward(self, x: Tensor, frames: int, valid: Tensor | None) -> Tensor:
        """x (B, T_in, C_in) -> (B, T_in / stride, C_out); the first ``frames`` output frames are real
        conv outputs, and ``valid`` (B, T, 1), when given, marks each utterance's own."""
        tuned = cpu_kernels(x.device)
        # Without a gradient (a frozen tower, inference) the norm and GELU overwrite the fresh conv output
        # instead of allocating two more (B, T, C) tensors.
        inplace = not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())))
        if tuned:
            y = block_conv(x, self.conv.weight, self.conv.bias, self.stride)
        else:  # stock conv1d (cuDNN), zero frames appended to the same length (past ``frames``: cropped)
            y = F.conv1d(x.transpose(1, 2), self.conv.weight, self.conv.bias, self.stride).transpose(1, 2)
            y = F.pad(y, (0, 0, 0, x.shape[1] // self.stride - y.shape[1]))  # (B, T_in / stride, C_out)
        if isinstance(self.layer_norm, MaskedGroupNorm):
            if tuned and self.conv.in_channels * self.kernel_size <= self._WINDOW_STATS_MAX:
                mean, var = window_moments(x, self.conv, frames, valid)
            else:
                mean, var = frame_moments(y, frames, valid)
            y = self.layer_norm(y, mean, var, inplace)
        elif self.layer_norm is not None:
            y = self.layer_norm(y)
        return torch.ops.aten.gelu_(y) if inplace else F.gelu(y)


class FeatureEncoder(nn.Module):
    """Waveform (B, S) -> frames (B, T, C) with valid frame counts.

    The layers run time-major on a waveform zero-padded to a multiple of the total
    stride, so each layer's input length is a multiple of its stride (see
    :mod:`cssl.kernels.block_conv`); frames computed past the conv output length are
    cropped at the end and never reach a valid frame or a norm statistic.
    """

    def __init__(self, conv_layers: nn.ModuleList) -> None:
        super().__init__()
        self.conv_layers = conv_layers

    @property
    def out_channels(self) -> int:
        return self.conv_layers[-1].conv.out_channels

    def output_lengths(self, lengths: Tensor, upto: int | None = None) -> Tensor:
        """Valid frames for ``lengths`` valid samples: floor((L - k) / s) + 1 per layer, at least 0."""
        for block in list(self.conv_layers)[:upto]:
            lengths = torch.div(lengths - block.kernel_size, block.stride, rounding_mode="floor") + 1
            lengths = lengths.clamp(min=0)
        return lengths

    def num_frames(self, num_samples: int) -> int:
        """Frames :meth:`forward` gives for a batch ``num_samples`` wide (input shorter than the receptive
        field is padded to one window: one frame)."""
        return int(self.output_lengths(torch.tensor([max(num_samples, self.receptive_field)]))[0])

    def forward(self, waves: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if waves.ndim != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(waves.shape)}")
        batch, samples = waves.shape
        if samples < self.receptive_field and lengths is None:  # one all-padding frame, zero valid
            lengths = torch.full((batch,), samples, dtype=torch.long, device=waves.device)
        frame_lengths = None if lengths is None else self.output_lengths(lengths)
        if lengths is not None and not torch.compiler.is_exporting() and bool((lengths >= samples).all()):
            lengths = None  # nothing is padded: statistics over whole rows (an exported graph keeps the masks)
        # Shorter input is zero-padded to one window (an exported graph's input is at least one window long).
        exporting = torch.compiler.is_exporting()
        frames = samples if exporting else max(samples, self.receptive_field)
        padded = -(-frames // self.stride) * self.stride
        x = F.pad(waves, (0, padded - samples)).unsqueeze(-1)  # (B, S', 1), S' a multiple of the total stride
        for i, block in enumerate(self.conv_layers):
            frames = (frames - block.kernel_size) // block.stride + 1  # conv output length of the batch
            frames = frames if exporting else max(0, frames)
            if lengths is not None and isinstance(block.layer_norm, MaskedGroupNorm):
                size = x.shape[1] // block.stride
                valid = (torch.arange(size, device=waves.device) < self.output_lengths(lengths, upto=i + 1)[:, None])
                valid = valid.unsqueeze(-1)  # (B, T, 1)
                x = block(x, frames, valid) * valid.to(x.dtype)  # padded frames back to zero after the norm
            else:
                x = block(x, frames, None)  # (B, T, C)
        if exporting:  # what the shape arithmetic implies, told to torch.export's symbolic shapes
            torch._check(frames > 0)
            torch._check(frames <= x.shape[1])
        return x[:, :frames], frame_lengths  # (B, T, C)

    @property
    def receptive_field(self) -> int:
        """Samples needed for one output frame."""
        field = 1
        for block in reversed(self.conv_layers):
            field = (field - 1) * block.stride + block.kernel_size
        return field

    @property
    def stride(self) -> int:
        """Samples between consecutive frames."""
        stride = 1
        for block in self.conv_layers:
            stride *= block.stride
        return stride


def build_feature_encoder(cfg: FeatureEncoderConfig) -> FeatureEncoder:
    """Builds the conv stack of ``cfg`` (torchaudio's layout and parameter names)."""
    blocks = []
    in_channels = 1
    for i, (channels, kernel, stride) in enumerate(cfg.conv_layers):
        norm: nn.Module | None = None
        if cfg.norm == "group_norm" and i == 0:
            norm = MaskedGroupNorm(channels, channels, affine=True)
        elif cfg.norm == "layer_norm":
            norm = nn.LayerNorm(channels)  # over each frame's channels (time-major)
        conv = nn.Conv1d(in_channels, channels, kernel, stride=stride, bias=cfg.bias)
        nn.init.kaiming_normal_(conv.weight)
        blocks.append(ConvBlock(conv, norm))
        in_channels = channels
    return FeatureEncoder(nn.ModuleList(blocks))
