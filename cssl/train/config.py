"""Settings every training stage shares: where outputs go, precision, logging, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cssl.config import Count, Positive, PositiveInt


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
