"""Configuration of the pretraining stage (defaults: wav2vec 2.0 BASE on LibriSpeech)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from cssl.config import Count, NonNegative, Positive, PositiveInt, Range
from cssl.data.dataset import DataConfig
from cssl.model.config import ModelConfig
from cssl.train.config import RunConfig
from cssl.train.schedule import ScheduleConfig

Beta = Annotated[float, Range(0, 1, high_open=True)]
"""An Adam beta in [0, 1)."""


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
class OptimConfig:
    """AdamW over the trainable parameters, with clipping and accumulation."""

    lr: Positive = 5e-4
    """Peak learning rate. fairseq: lr."""
    betas: tuple[Beta, Beta] = (0.9, 0.98)
    """Adam betas. fairseq: adam_betas."""
    eps: Positive = 1e-6
    """Adam epsilon. fairseq: adam_eps."""
    weight_decay: NonNegative = 0.01
    """Decoupled weight decay. fairseq: weight_decay."""
    max_steps: PositiveInt = 400_000
    """Updates to train for. fairseq: max_update."""
    accumulation: PositiveInt = 1
    """Batches per update in all processes together; W processes take accumulation/W each. fairseq: update_freq x distributed_world_size."""
    grad_clip: NonNegative = 10.0
    """Clip the global gradient norm to this; 0 disables. fairseq: clip_norm."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""


@dataclass
class PretrainConfig(RunConfig):
    """Everything a pretraining run needs; saved in each checkpoint (run keys from :class:`RunConfig`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Towers, quantizer and masking."""
    data: DataConfig = field(default_factory=DataConfig)
    """Unlabeled training (and optional validation) audio."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Objective."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    out_dir: str = "runs/pretrain"
    """Checkpoints, metrics, TensorBoard logs and plots go here."""
