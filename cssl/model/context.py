"""The context tower: feature projection, convolutional position embedding, Transformer.

Notation: B batch, T frames, C local-feature channels, D model width, H heads,
K head width (D / H).

Parameter names follow torchaudio's ``Encoder`` (``feature_projection.*``,
``transformer.pos_conv_embed.*``, ``transformer.layers.{i}.attention.q_proj``...) so its
state dicts, and so anything ``import_huggingface_model`` / ``import_fairseq_model``
produce, load unchanged. Attention runs through ``scaled_dot_product_attention`` with
a boolean key-padding mask broadcast over queries (no (T, T) mask is materialised).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from cssl.kernels.dropout import Dropout, keep_mask
from cssl.kernels.switch import cpu_kernels
from cssl.model.config import ContextConfig


class FeatureProjection(nn.Module):
    """LayerNorm over local features, then a linear map to the model width."""

    def __init__(self, in_features: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_features)
        self.projection = nn.Linear(in_features, out_features)
        self.dropout = Dropout(dropout)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (normed features (B, T, C), projected (B, T, D)); the quantizer reads the first."""
        normed = self.layer_norm(features)
        return normed, self.dropout(self.projection(normed))


class PositionalConv(nn.Module):
    """Relative position information from a wide grouped convolution (weight-normalised)."""

    def __init__(self, embed_dim: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        conv = nn.Conv1d(embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=(4.0 / (kernel_size * embed_dim)) ** 0.5)
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, D)
        # As a 2-D conv of height 1 in channels-last layout, which (B, T, D) already is: oneDNN's
        # grouped kernels run 1.7-2.5x faster there than conv1d's channels-first layout.
        conv = self.conv
        image = x.transpose(1, 2).unsqueeze(2)  # (B, D, 1, T), channels-last strides, no copy
        weight = conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (D, D / G, 1, K)
        y = F.conv2d(image, weight, conv.bias, padding=(0, conv.padding[0]), groups=conv.groups)  # (B, D, 1, T')
        y = y.squeeze(2).transpose(1, 2)  # (B, T', D), T' = T + 1 for an even kernel
        return F.gelu(y[:, : x.shape[1]])  # (B, T, D)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (torchaudio names)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:  # x: (B, T, D), key_mask: (B, 1, 1, T)
        b, t, d = x.shape
        # One matmul for q, k and v: the three weights are concatenated on the fly.
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3D, D)
        bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])  # (3D,)
        qkv = F.linear(x, weight, bias).view(b, t, 3, self.num_heads, d // self.num_heads)  # (B, T, 3, H, K)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, K)
        if self.training and self.dropout > 0 and cpu_kernels(x.device):
            out = attention_with_dropout(q, k, v, key_mask, self.dropout)  # (B, H, T, K)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0
            )  # (B, H, T, K)
        out = out.transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return self.out_proj(out)


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, p: float) -> Tensor:
    """softmax(q k^T / sqrt(K)) with dropout on the weights, times v: SDPA's math path with a cheap mask.

    q, k, v: (B, H, T, K); key_mask: (B, 1, 1, T), True where attention may look.
    """
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))  # (B, H, T, T)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    keep, p_eff = keep_mask(scores.shape, p, scores.device)
    weights = torch.where(keep, scores.softmax(dim=-1), 0.0)  # (B, H, T, T)
    return torch.matmul(weights, v).mul_(1.0 / (1.0 - p_eff))  # (B, H, T, K): the dropout scale on the smaller side


class FeedForward(nn.Module):
    """Linear, GELU, dropout, linear, dropout."""

    def __init__(self, dim: int, inner: int, activation_dropout: float, dropout: float) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, inner)
        self.intermediate_dropout = Dropout(activation_dropout)
        self.output_dense = nn.Linear(inner, dim)
        self.output_dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    """Attention and feed-forward blocks with residuals, post-LN (BASE) or pre-LN (LARGE)."""

    def __init__(self, attention: SelfAttention, feed_forward: FeedForward, dropout: float,
                 layer_norm_first: bool) -> None:
        super().__init__()
        self.attention = attention
        self.dropout = Dropout(dropout)
        self.layer_norm = nn.LayerNorm(attention.embed_dim)
        self.feed_forward = feed_forward
        self.final_layer_norm = nn.LayerNorm(attention.embed_dim)
        self.layer_norm_first = layer_norm_first

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:  # x: (B, T, D)
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.layer_norm(x), key_mask))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, key_mask)))
        return self.final_layer_norm(x + self.feed_forward(x))


class Transformer(nn.Module):
    """Position embedding, then the layer stack with LayerDrop."""

    def __init__(self, pos_conv_embed: PositionalConv, layers: nn.ModuleList, dropout: float,
                 layer_norm_first: bool, layer_drop: float) -> None:
        super().__init__()
        self.pos_conv_embed = pos_conv_embed
        self.layer_norm = nn.LayerNorm(pos_conv_embed.embed_dim)
        self.layer_norm_first = layer_norm_first
        self.layer_drop = layer_drop
        self.dropout = Dropout(dropout)
        self.layers = layers
        self.checkpoint_activations = False
        """Recompute layers in backward (set by :func:`~cssl.model.build_model`)."""

    def forward(self, x: Tensor, key_mask: Tensor | None, num_layers: int | None = None) -> list[Tensor]:
        """Outputs of the first ``num_layers`` layers (all by default).

        As in fairseq: with post-LN layers (BASE) the stack's layer norm comes before
        the first layer; with pre-LN layers (LARGE) it comes after the last.
        """
        x = x + self.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        outputs = []
        for layer in self.layers[:num_layers]:
            # LayerDrop draws from torch's global generator, which checkpoints save and restore.
            if not (self.training and self.layer_drop > 0 and torch.rand(()) < self.layer_drop):
                if self.checkpoint_activations and self.training and torch.is_grad_enabled():
                    # Dropout draws from torch's generator, whose state the recomputation restores.
                    x = torch.utils.checkpoint.checkpoint(layer, x, key_mask, use_reentrant=False)
                else:
                    x = layer(x, key_mask)
            outputs.append(x)
        if self.layer_norm_first and (num_layers is None or num_layers >= len(self.layers)):
            outputs[-1] = self.layer_norm(outputs[-1])
        return outputs


class ContextEncoder(nn.Module):
    """Local features (B, T, C) -> contextual representations (B, T, D)."""

    def __init__(self, feature_projection: FeatureProjection, transformer: Transformer) -> None:
        super().__init__()
        self.feature_projection = feature_projection
        self.transformer = transformer

    @property
    def embed_dim(self) -> int:
        return self.transformer.pos_conv_embed.embed_dim

    def forward(self, projected: Tensor, padding: Tensor | None, num_layers: int | None = None) -> list[Tensor]:
        """Runs the Transformer over projected frames; ``padding`` (B, T) is True on padded frames."""
        key_mask = None
        if padding is not None and not torch.compiler.is_exporting() and not bool(padding.any()):
            padding = None  # nothing padded: attention without a mask (an exported graph keeps the mask)
        if padding is not None:
            projected = projected.masked_fill(padding.unsqueeze(-1), 0.0)  # padding must not reach the pos conv
            empty = padding.all(dim=1, keepdim=True)  # (B, 1): rows with no valid frame
            # An all-masked row would give NaN; let empty rows attend everywhere (their output is unused).
            key_mask = (~padding | empty)[:, None, None, :]  # (B, 1, 1, T): True where attention may look
        return self.transformer(projected, key_mask, num_layers)


def build_context_encoder(in_features: int, cfg: ContextConfig) -> ContextEncoder:
    """Builds the context tower of ``cfg`` with BERT-style init (normal 0.02, zero bias)."""
    layers = nn.ModuleList(
        EncoderLayer(
            SelfAttention(cfg.embed_dim, cfg.num_heads, cfg.attention_dropout),
            FeedForward(cfg.embed_dim, cfg.ffn_dim, cfg.activation_dropout, cfg.dropout),
            cfg.dropout,
            cfg.layer_norm_first,
        )
        for _ in range(cfg.num_layers)
    )
    for module in layers.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
    transformer = Transformer(
        PositionalConv(cfg.embed_dim, cfg.pos_conv_kernel, cfg.pos_conv_groups),
        layers,
        cfg.dropout,
        cfg.layer_norm_first,
        cfg.layer_drop,
    )
    return ContextEncoder(FeatureProjection(in_features, cfg.embed_dim, cfg.dropout_input), transformer)
