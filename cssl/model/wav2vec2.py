"""The two-tower model and its contrastive pretraining heads (wav2vec 2.0).

Notation: B batch, S samples, T frames, C local-feature channels, D model width,
N masked frames, F compared width (``final_dim``), K distractors.

:class:`Wav2Vec2Model` holds the towers under torchaudio's names
(``feature_extractor``, ``encoder``, optional ``aux`` CTC head) plus the learned
mask embedding, so ``model.load_state_dict(torchaudio_model.state_dict(),
strict=False)`` works (only ``mask_embedding`` is not in torchaudio's). The
:class:`Wav2Vec2Pretrainer` adds the quantizer and the projections used by the
contrastive task and returns a :class:`PretrainOutput` of loss sums and statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cssl.kernels.dropout import Dropout
from cssl.model import losses
from cssl.model.config import ModelConfig
from cssl.model.context import ContextEncoder, build_context_encoder
from cssl.model.feature_encoder import FeatureEncoder, build_feature_encoder
from cssl.model.masking import batch_span_mask, gumbel_noise, sample_distractors
from cssl.model.quantizer import GumbelQuantizer


class _GradMultiply(torch.autograd.Function):
    """Identity forward, gradient times ``scale`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


@dataclass
class EncoderOutput:
    """What the towers produce for a batch."""

    features: Tensor
    """(B, T, C) local features (before the feature projection's layer norm)."""
    normed: Tensor
    """(B, T, C) layer-normed local features (what the quantizer reads)."""
    layers: list[Tensor]
    """Per-layer context outputs, each (B, T, D); the last is the tower's output."""
    lengths: Tensor | None
    """(B,) valid frames, or None when no lengths were given."""
    padding: Tensor | None
    """(B, T) True on padded frames."""

    @property
    def context(self) -> Tensor:
        """(B, T, D) output of the last layer."""
        return self.layers[-1]


class Wav2Vec2Model(nn.Module):
    """Local tower + context tower (+ optional CTC head ``aux``)."""

    def __init__(self, feature_extractor: FeatureEncoder, encoder: ContextEncoder, aux: nn.Linear | None = None,
                 feature_grad_scale: float = 1.0) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor
        self.encoder = encoder
        self.aux = aux
        self.mask_embedding = nn.Parameter(torch.empty(encoder.embed_dim).uniform_())
        self.feature_grad_scale = feature_grad_scale

    def encode(self, waves: Tensor, lengths: Tensor | None = None, time_mask: Tensor | None = None,
               num_layers: int | None = None, channel_mask: Tensor | None = None) -> EncoderOutput:
        """Runs both towers; frames where ``time_mask`` (B, T) is True get the mask embedding,
        channels where ``channel_mask`` (B, D) is True are zeroed (SpecAugment-style fine-tuning)."""
        features, frame_lengths = self.feature_extractor(waves, lengths)  # (B, T, C)
        if self.training and self.feature_grad_scale != 1.0:
            features = _GradMultiply.apply(features, self.feature_grad_scale)
        padding = None
        if frame_lengths is not None:
            padding = torch.arange(features.shape[1], device=features.device)[None, :] >= frame_lengths[:, None]
        normed, x = self.encoder.feature_projection(features)  # (B, T, C), (B, T, D)
        if time_mask is not None:
            x = torch.where(time_mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        if channel_mask is not None:
            x = x.masked_fill(channel_mask.unsqueeze(1), 0.0)  # (B, 1, D) over all frames
        layers = self.encoder(x, padding, num_layers)
        return EncoderOutput(features, normed, layers, frame_lengths, padding)

    def forward(self, waves: Tensor, lengths: Tensor | None = None, time_mask: Tensor | None = None,
                channel_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """torchaudio's contract: (context output or CTC logits (B, T, D|V), valid frames).

        Fine-tuning passes its SpecAugment masks.
        """
        out = self.encode(waves, lengths, time_mask, channel_mask=channel_mask)
        x = out.context
        return (self.aux(x) if self.aux is not None else x), out.lengths


@dataclass
class PretrainOutput:
    """Loss sums and statistics of one pretraining batch (normalise by ``count``)."""

    contrastive: Tensor
    """Sum of InfoNCE losses over scored frames."""
    diversity: Tensor
    """Codebook diversity loss times ``count``."""
    penalty: Tensor
    """Mean squared local feature times ``count``."""
    count: int
    """Scored (masked) frames."""
    correct: Tensor
    """Scored frames where the true target won."""
    prob_perplexity: Tensor
    """Perplexity of the average soft code distribution (diversity loss input)."""
    code_perplexity: Tensor
    """Perplexity of the hard codes used (codebook usage)."""
    num_vars: int
    """Codebook entries in total (G * V)."""
    num_distractors: int
    """Distractors per target (chance accuracy is 1 / (1 + this))."""


class Wav2Vec2Pretrainer(nn.Module):
    """Masks the context tower's input and scores it against quantized local features."""

    def __init__(self, model: Wav2Vec2Model, quantizer: GumbelQuantizer, final_dim: int, cfg: ModelConfig,
                 num_distractors: int, cross_distractors: int, logit_temperature: float) -> None:
        super().__init__()
        self.model = model
        self.quantizer = quantizer
        self.project_q = nn.Linear(quantizer.codebook.shape[-1] * quantizer.groups, final_dim)
        self.final_proj = nn.Linear(model.encoder.embed_dim, final_dim)
        self.dropout_features = Dropout(cfg.dropout_features)
        self.mask_cfg = cfg.mask
        self.num_distractors = num_distractors
        self.cross_distractors = cross_distractors
        self.logit_temperature = logit_temperature

    def forward(self, waves: Tensor, lengths: Tensor, seeds: list[int] | Tensor, tau: float) -> PretrainOutput:
        """One batch: ``seeds`` (one per row) drive masks, distractors and Gumbel noise, drawn on the device."""
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=waves.device)  # (B,)
        frame_lengths = self.model.feature_extractor.output_lengths(lengths)
        num_frames = self.model.feature_extractor.num_frames(waves.shape[1])
        m = self.mask_cfg
        time_mask = batch_span_mask(frame_lengths, num_frames, m.prob, m.span, m.min_spans, seeds)  # (B, T)
        out = self.model.encode(waves, lengths, time_mask)

        valid = ~out.padding if out.padding is not None else torch.ones_like(time_mask)
        penalty, _ = losses.feature_penalty(out.features[valid], 1)
        targets_in = self.dropout_features(out.normed[time_mask])  # (N, C)
        noise = gumbel_noise(time_mask, self.quantizer.groups, self.quantizer.entries, seeds) if self.training else None
        q = self.quantizer(targets_in, tau, noise)
        targets = self.project_q(q.quantized)  # (N, F)
        context = self.final_proj(out.context[time_mask])  # (N, F)

        index, usable = sample_distractors(time_mask, self.num_distractors, self.cross_distractors, seeds)
        logits = losses.contrastive_logits(context, targets, index, self.logit_temperature)
        contrastive, count = losses.contrastive_loss(logits, usable)
        correct, _ = losses.contrastive_accuracy(logits, usable)
        diversity, _ = losses.diversity_loss(q.prob_perplexity, q.num_vars, count)
        return PretrainOutput(
            contrastive=contrastive,
            diversity=diversity,
            penalty=penalty * count,
            count=count,
            correct=correct,
            prob_perplexity=q.prob_perplexity.detach(),
            code_perplexity=q.code_perplexity.detach(),
            num_vars=q.num_vars,
            num_distractors=self.num_distractors + self.cross_distractors,
        )


def build_model(cfg: ModelConfig, vocab_size: int | None = None) -> Wav2Vec2Model:
    """The towers of ``cfg``; with ``vocab_size``, a CTC head ``aux`` on top."""
    feature_extractor = build_feature_encoder(cfg.feature_encoder)
    encoder = build_context_encoder(feature_extractor.out_channels, cfg.context)
    aux = nn.Linear(cfg.context.embed_dim, vocab_size) if vocab_size else None
    encoder.transformer.checkpoint_activations = cfg.checkpoint_activations
    return Wav2Vec2Model(feature_extractor, encoder, aux, cfg.feature_grad_scale)


def build_pretrainer(cfg: ModelConfig, num_distractors: int = 100, cross_distractors: int = 0,
                     logit_temperature: float = 0.1) -> Wav2Vec2Pretrainer:
    """Towers plus quantizer and projections for contrastive pretraining."""
    model = build_model(cfg)
    q = cfg.quantizer
    quantizer = GumbelQuantizer(model.feature_extractor.out_channels, q.groups, q.entries, q.dim)
    return Wav2Vec2Pretrainer(model, quantizer, cfg.final_dim, cfg, num_distractors, cross_distractors,
                              logit_temperature)


def gumbel_temperature(step: int, start: float, end: float, decay: float) -> float:
    """Temperature at update ``step``: max(end, start * decay**step)."""
    return max(end, start * decay**step)
