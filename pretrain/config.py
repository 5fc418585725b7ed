"""Configuration of the pretraining stage (defaults: wav2vec 2.0 BASE on LibriSpeech)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cssl.data.dataset import DataConfig
from cssl.model.config import ModelConfig
from cssl.train.config import OptimConfig, RunConfig
from cssl.utils.config import Count, NonNegative, Positive, PositiveInt


@dataclass
class LossConfig:
    """Weights and settings of the pretraining objective."""

    num_distractors: PositiveInt = 100
    """Distractors K per target, from the same utterance's masked frames. fairseq: num_negatives."""
    cross_distractors: Count = 0
    """Extra distractors from other utterances of the batch. fairseq: cross_sample_negatives."""
    logit_temperature: Positive = 0.1
    """Cosine similarities are divided by this before the softmax. fairseq: logit_temp."""
    diversity_weight: NonNegative = 0.1
    """Weight of the codebook diversity loss. fairseq: loss_weights[0]."""
    penalty_weight: NonNegative = 10.0
    """Weight of the local-feature L2 penalty. fairseq: loss_weights[1]."""


@dataclass
class ProbeConfig:
    """The phonetic probe run at each validation when the validation manifest has phone alignments."""

    utterances: Count = 200
    """Validation utterances probed (the first ones with an alignment); 0 turns the probe off."""
    clusters: PositiveInt = 100
    """k of the k-means per level."""


@dataclass
class PretrainConfig(RunConfig):
    """Everything a pretraining run needs; saved in each checkpoint (run keys from :class:`RunConfig`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Towers, quantizer and masking (replaced by the architecture of ``init`` when it is given)."""
    init: str | None = None
    """Start from these weights with a fresh optimizer and schedule (continued pretraining): a pretraining checkpoint or release of ours, a transformers Wav2Vec2ForPreTraining folder or a fairseq wav2vec2 checkpoint (quantizer and projections included), or a fine-tuned model, transformers Wav2Vec2Model or torchaudio state dict (towers and mask embedding; new quantizer). Masking and the Gumbel temperature schedule stay this config's. Ignored when resuming."""
    data: DataConfig = field(default_factory=DataConfig)
    """Unlabeled training (and optional validation) audio."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Objective."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """Phonetic probe at validation (PNMI per level; needs ``NAME.phones.jsonl`` beside the validation manifest)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    out_dir: str = "runs/pretrain"
    """Checkpoints, metrics, TensorBoard logs and plots go here."""
