"""The local tower: convolutional feature encoder over the raw 16 kHz waveform.

Notation: B batch, S samples, T frames, C channels.

Parameter names follow torchaudio's ``FeatureExtractor`` (``conv_layers.{i}.conv``,
``conv_layers.{i}.layer_norm``) so its state dicts load unchanged. Two differences
in behaviour, both only on padded batches: the BASE group norm takes its statistics
over each utterance's valid frames only (torchaudio includes the padding, so a
padded batch differs from one-by-one), and frames past the valid length are zeroed
after that norm. Input shorter than the receptive field (400 samples for BASE) gives
zero frames instead of a convolution error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cssl.model.config import FeatureEncoderConfig


class ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over channels of a (B, C, T) tensor (torchaudio's ``LayerNorm`` layout)."""

    def forward(self, x: Tensor) -> Tensor:  # x: (B, C, T)
        x = x.transpose(1, 2)  # (B, T, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.transpose(1, 2)  # (B, C, T)


class MaskedGroupNorm(nn.GroupNorm):
    """Per-channel normalisation over time (groups == channels) that ignores padded frames."""

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:  # x: (B, C, T), valid: (B, 1, T)
        if valid is None:
            return super().forward(x)
        weight = valid.to(x.dtype)
        count = weight.sum(dim=2, keepdim=True).clamp(min=1)  # (B, 1, 1)
        mean = (x * weight).sum(dim=2, keepdim=True) / count  # (B, C, 1)
        var = ((x - mean).square() * weight).sum(dim=2, keepdim=True) / count
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None] + self.bias[:, None]


class ConvBlock(nn.Module):
    """Conv1d, optional normalisation, GELU."""

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

    def forward(self, x: Tensor, valid: Tensor | None) -> Tensor:  # x: (B, C_in, S) -> (B, C_out, T)
        x = self.conv(x)
        if isinstance(self.layer_norm, MaskedGroupNorm):
            x = self.layer_norm(x, valid)
        elif self.layer_norm is not None:
            x = self.layer_norm(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Waveform (B, S) -> frames (B, T, C) with valid frame counts."""

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

    def forward(self, waves: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if waves.ndim != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(waves.shape)}")
        field = self.receptive_field
        if waves.shape[1] < field:
            if lengths is None:
                lengths = torch.full((waves.shape[0],), waves.shape[1], dtype=torch.long, device=waves.device)
            waves = F.pad(waves, (0, field - waves.shape[1]))  # convs need one full window
        if lengths is not None and bool((lengths >= waves.shape[1]).all()):
            # nothing is padded: the plain (faster) kernels give the same result
            frame_lengths, lengths = self.output_lengths(lengths), None
        else:
            frame_lengths = None if lengths is None else self.output_lengths(lengths)
        x = waves.unsqueeze(1)  # (B, 1, S)
        for i, block in enumerate(self.conv_layers):
            if lengths is not None and isinstance(block.layer_norm, MaskedGroupNorm):
                valid = _valid_mask(self.output_lengths(lengths, upto=i + 1), _conv_len(x.shape[-1], block))
                x = block(x, valid) * valid.to(x.dtype)  # padded frames back to zero after the norm
            else:
                x = block(x, None)
        return x.transpose(1, 2), frame_lengths  # (B, T, C)

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
            norm = ChannelLayerNorm(channels, elementwise_affine=True)
        conv = nn.Conv1d(in_channels, channels, kernel, stride=stride, bias=cfg.bias)
        nn.init.kaiming_normal_(conv.weight)
        blocks.append(ConvBlock(conv, norm))
        in_channels = channels
    return FeatureEncoder(nn.ModuleList(blocks))


def _conv_len(size: int, block: ConvBlock) -> int:
    return max(0, (size - block.kernel_size) // block.stride + 1)


def _valid_mask(lengths: Tensor, size: int) -> Tensor:
    """(B, 1, T) True on valid frames."""
    return (torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)
