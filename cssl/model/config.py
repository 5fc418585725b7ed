"""Model configuration: one dataclass per component, nested into :class:`ModelConfig`.

Defaults are wav2vec 2.0 BASE (fairseq ``wav2vec2_base_librispeech``); the presets in
``configs/model/`` override them for ``tiny`` and ``large``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from cssl.utils.config import Count, Dropout, NonNegative, Positive, PositiveInt, Probability, Range

BASE_CONV_LAYERS = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


@dataclass
class FeatureEncoderConfig:
    """The local tower: a stack of 1-D convolutions over the raw waveform."""

    conv_layers: list[tuple[int, int, int]] = field(default_factory=lambda: list(BASE_CONV_LAYERS))
    """(channels, kernel, stride) per layer; the BASE stack gives 20 ms frames (stride 320) of 25 ms. fairseq: conv_feature_layers."""
    norm: Literal["group_norm", "layer_norm"] = "group_norm"
    """group_norm: per-channel norm after the first conv (BASE); layer_norm: after every conv (LARGE). fairseq: extractor_mode (default = group_norm)."""
    bias: bool = False
    """Conv biases (False for BASE, True for LARGE). fairseq: conv_bias."""


@dataclass
class ContextConfig:
    """The context tower: feature projection, convolutional position embedding, Transformer."""

    embed_dim: PositiveInt = 768
    """Transformer width. fairseq: encoder_embed_dim."""
    num_layers: PositiveInt = 12
    """Transformer layers. fairseq: encoder_layers."""
    num_heads: PositiveInt = 12
    """Attention heads. fairseq: encoder_attention_heads."""
    ffn_dim: PositiveInt = 3072
    """Feed-forward inner width. fairseq: encoder_ffn_embed_dim."""
    layer_norm_first: bool = False
    """Pre-LN layers (LARGE) instead of post-LN (BASE). fairseq: layer_norm_first."""
    pos_conv_kernel: PositiveInt = 128
    """Kernel of the convolutional relative position embedding (frames). fairseq: conv_pos."""
    pos_conv_groups: PositiveInt = 16
    """Groups of the position convolution. fairseq: conv_pos_groups."""
    dropout: Dropout = 0.1
    """Dropout on attention and feed-forward outputs. fairseq: dropout."""
    attention_dropout: Dropout = 0.1
    """Dropout on attention weights. fairseq: attention_dropout."""
    activation_dropout: Dropout = 0.0
    """Dropout inside the feed-forward block. fairseq: activation_dropout."""
    dropout_input: Dropout = 0.1
    """Dropout on the projected features entering the Transformer. fairseq: dropout_input."""
    layer_drop: Dropout = 0.05
    """Probability of skipping a whole layer in training (LayerDrop). fairseq: encoder_layerdrop."""


@dataclass
class QuantizerConfig:
    """Gumbel-softmax product quantizer of the local features (the contrastive targets)."""

    groups: PositiveInt = 2
    """Codebooks G; a target is the concatenation of one entry per codebook. fairseq: latent_groups."""
    entries: PositiveInt = 320
    """Entries V per codebook. fairseq: latent_vars."""
    dim: PositiveInt = 256
    """Width of the quantized vector (split evenly over the groups). fairseq: latent_dim."""
    temperature: tuple[Positive, Positive, Annotated[float, Range(0, 1, low_open=True)]] = (2.0, 0.5, 0.999995)
    """Gumbel temperature (start, end, decay per update): max(end, start * decay**step). fairseq: latent_temp."""


@dataclass
class MaskConfig:
    """Span masking of the Transformer input (time) for pretraining."""

    prob: Probability = 0.65
    """Share of frames to mask before overlaps: int(prob * T / span + u) spans start per utterance; fairseq: mask_prob."""
    span: PositiveInt = 10
    """Span length in frames. fairseq: mask_length."""
    min_spans: Count = 2
    """Minimum spans per utterance. fairseq: min_masks of compute_mask_indices (2 there)."""


@dataclass
class ModelConfig:
    """The two towers and the pretraining heads."""

    feature_encoder: FeatureEncoderConfig = field(default_factory=FeatureEncoderConfig)
    """Local tower."""
    context: ContextConfig = field(default_factory=ContextConfig)
    """Context tower."""
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    """Target quantizer."""
    mask: MaskConfig = field(default_factory=MaskConfig)
    """Time masking."""
    final_dim: PositiveInt = 256
    """Width of the space where context outputs and targets are compared. fairseq: final_dim."""
    dropout_features: Dropout = 0.1
    """Dropout on the local features before quantization. fairseq: dropout_features."""
    feature_grad_scale: NonNegative = 0.1
    """Gradient multiplier into the local tower (stabilises pretraining). fairseq: feature_grad_mult."""
    checkpoint_activations: bool = False
    """Recompute each Transformer layer in the backward pass instead of keeping its activations (memory for LARGE; same gradients, about a third more compute). fairseq: checkpoint_activations."""
