"""Learning-rate schedules as explicit functions of the update number.

A resumed run recomputes the rate from the step, so nothing about the schedule needs
saving beyond the step itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from cssl.utils.config import Count, Probability, Range


@dataclass
class ScheduleConfig:
    """Shape of the learning rate over training (multiplier of the peak rate)."""

    kind: Literal["linear", "cosine", "tri_stage", "constant"] = "linear"
    """linear: warmup then linear decay to 0 (fairseq's polynomial_decay); cosine; tri_stage; constant after warmup."""
    warmup_steps: Count = 32_000
    """Updates of linear warmup from 0."""
    hold_fraction: Probability = 0.4
    """tri_stage only: share of the updates held at the peak after warmup."""
    final_scale: Annotated[float, Range(0, 1, low_open=True)] = 0.05
    """tri_stage/cosine: rate at the end relative to the peak."""


def lr_scale(step: int, total: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the peak learning rate at update ``step`` of ``total``."""
    warmup = max(0, cfg.warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.kind == "constant":
        return 1.0
    rest = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / rest)
    if cfg.kind == "linear":
        return 1.0 - progress
    if cfg.kind == "cosine":
        return cfg.final_scale + (1 - cfg.final_scale) * 0.5 * (1 + math.cos(math.pi * progress))
    hold = cfg.hold_fraction * total
    if step < warmup + hold:
        return 1.0
    decay_steps = max(1.0, total - warmup - hold)
    # exponential decay to final_scale over the remaining updates (wav2vec 2.0 fine-tuning)
    return cfg.final_scale ** min(1.0, (step - warmup - hold) / decay_steps)


def schedule_warnings(cfg: ScheduleConfig, total: int, stop_after: int | None = None) -> list[str]:
    """Legal but doubtful schedules: a warmup that never ends within the run."""
    end = total if stop_after is None else min(total, stop_after)
    if cfg.warmup_steps >= end:
        return [f"optim.schedule.warmup_steps={cfg.warmup_steps} is not shorter than the run ({end} updates): "
                "the learning rate never reaches its peak; lower the warmup or raise optim.max_steps"]
    return []
