"""Settings every training stage shares: where outputs go, precision, logging, checkpoints, the optimizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from cssl.train.schedule import ScheduleConfig
from cssl.utils.config import Count, NonNegative, Positive, PositiveInt, Range

Beta = Annotated[float, Range(0, 1, high_open=True)]
"""An Adam beta in [0, 1)."""


@dataclass
class RunConfig:
    """Run-level keys common to pretraining and fine-tuning (stage configs extend this)."""

    out_dir: str = "runs/run"
    """Checkpoints, metrics, TensorBoard logs and plots go here."""
    seed: Count = 1
    """Seeds initialisation, data order and the per-utterance masks."""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """Autocast precision; auto: bf16 on GPUs and CPUs with native bf16 (AVX512-BF16, AMX), else fp32."""
    log_every: PositiveInt = 10
    """Updates between progress lines."""
    valid_every: PositiveInt = 500
    """Updates between validations (needs data.valid_manifest)."""
    save_every: PositiveInt = 1000
    """Updates between step checkpoints (one is always written at the end)."""
    keep_checkpoints: PositiveInt = 2
    """Step checkpoints kept on disk (older ones are deleted)."""
    resume: str | None = None
    """Checkpoint to continue from, or 'auto' for the newest one in out_dir."""
    max_nonfinite: PositiveInt = 10
    """Consecutive non-finite losses tolerated before the run stops."""
    max_minutes: Positive | None = None
    """Stop (with a checkpoint) after this much wall time."""
    stop_after: PositiveInt | None = None
    """Stop (with a checkpoint) after this many updates; the schedule still runs to optim.max_steps."""
    threads: PositiveInt | None = None
    """CPU threads for torch (None: torch's default)."""


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
    fused: bool = False
    """AdamW's fused kernel (one pass per tensor, 3.7x faster updates); its rounding differs, so runs differ from unfused ones. transformers: optim=adamw_torch_fused."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""
