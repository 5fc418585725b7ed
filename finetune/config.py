"""Configuration of the fine-tuning stage (defaults: wav2vec 2.0 BASE, 10 h labeled setup)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cssl.data.dataset import DataConfig
from cssl.model.config import ModelConfig
from cssl.train.config import OptimConfig, RunConfig
from cssl.utils.config import Count, NonNegative, PositiveInt, Probability


@dataclass
class FreezeConfig:
    """What stays fixed while the CTC head learns."""

    feature_encoder: bool = True
    """Keep the local tower frozen for the whole run. fairseq: feature_grad_mult=0."""
    context_layers: Count = 0
    """Also freeze the feature projection, position conv and this many lowest Transformer layers."""
    encoder_steps: Count = 0
    """Train only the CTC head for this many first updates, then unfreeze the context tower. fairseq: freeze_finetune_updates."""


@dataclass
class SpecAugmentConfig:
    """Masking of the context tower's input during fine-tuning (uses the model's mask embedding)."""

    time_prob: Probability = 0.05
    """Share of frames starting a masked time span. fairseq: mask_prob."""
    time_span: PositiveInt = 10
    """Frames per time span. fairseq: mask_length."""
    channel_prob: Probability = 0.0
    """Share of channels starting a zeroed channel span. fairseq: mask_channel_prob."""
    channel_span: PositiveInt = 64
    """Channels per channel span. fairseq: mask_channel_length."""


@dataclass
class EarlyStopConfig:
    """Validation-based stopping."""

    metric: Literal["wer", "cer"] = "wer"
    """Dev score that ranks validations (best.pt, the n-best, early stopping); the other one breaks ties.
    "cer" for a minute or so of labels, where greedy WER stays at 1 or above (insertions) while CER falls.
    HF: metric_for_best_model."""
    patience: PositiveInt = 5
    """Validations without a better dev score before training stops."""
    min_delta: NonNegative = 0.0
    """Improvement of the dev score needed to count as better."""
    min_steps: Count = 0
    """No early stop before this many updates (a model from scratch can sit at the all-blank
    plateau for longer than the patience)."""


@dataclass
class CrossValidationConfig:
    """K-fold search over a small grid of settings before the final run (``--cv K``)."""

    folds: Count = 0
    """Number of folds of the labeled set (0: no cross-validation); ``--cv K`` sets it."""
    grid: dict[str, list[Any]] = field(default_factory=lambda: {"optim.lr": [2e-4, 1e-3], "freeze.context_layers": [0, 2]})
    """Config keys and the values to try; every combination is trained on every fold."""
    max_steps: PositiveInt | None = None
    """Updates of each fold run (None: optim.max_steps); early stopping still applies."""
    by_speaker: bool = True
    """Keep a speaker's utterances in one fold when the manifest names speakers (JSON lines)."""


@dataclass
class FinetuneConfig(RunConfig):
    """Everything a fine-tuning run needs; saved in each checkpoint (run keys from :class:`RunConfig`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Towers (replaced by the architecture of ``init`` when it is given)."""
    init: str | None = None
    """Start from these towers (None: from scratch): a checkpoint of ours, a transformers folder (Wav2Vec2ForPreTraining, -Model, -ForCTC), a fairseq wav2vec 2.0 checkpoint, or a torchaudio state dict (.pt)."""
    reinit_layers: Count = 0
    """Re-initialize this many top Transformer layers of ``init`` (their pretraining-task specialisation); no effect from scratch."""
    vocab: str | None = None
    """Vocabulary JSON; None builds it from the training transcripts."""
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_samples=None, min_samples=4000))
    """Labeled training and dev manifests."""
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    """Freezing schedule."""
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    """Input masking."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule (tri_stage is the wav2vec 2.0 fine-tuning schedule)."""
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    """Stopping on dev WER."""
    average_best: PositiveInt = 1
    """At the end, average the weights of this many best dev validations into ``averaged.pt`` and use it
    when its dev WER (then CER) is no worse than ``best.pt``'s (ESPnet's n-best averaging); 1: off."""
    calibrate: bool = True
    """At the end, fit the output temperature on the dev set and store it in the best checkpoint."""
    calibration_objective: Literal["word", "ctc"] = "word"
    """What the temperature minimises on dev: ``word`` (word-confidence NLL) or ``ctc`` (CTC NLL)."""
    cv: CrossValidationConfig = field(default_factory=CrossValidationConfig)
    """Cross-validation for choosing hyper-parameters (off unless ``cv.folds`` >= 2)."""
    out_dir: str = "runs/finetune"
    """Checkpoints (last.pt, best.pt), metrics and logs."""
    valid_every: PositiveInt = 100
    """Updates between dev evaluations (greedy WER/CER)."""
    save_every: PositiveInt = 500
    """Updates between step checkpoints."""
