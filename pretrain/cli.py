"""Contrastive pretraining (stage 1) on unlabeled audio.

One device (CPU or GPU)::

    cssl pretrain configs/pretrain/tiny.yaml data.manifest=corpus/unlabeled.tsv

Several GPUs (on a machine without GPUs the same command runs N CPU processes over gloo)::

    accelerate launch --multi_gpu --num_processes 4 -m cssl pretrain configs/pretrain/base.yaml data.manifest=...

Arguments after the YAML file are ``key=value`` overrides (``optim.lr=1e-3``,
``resume=auto``). ``--print-config`` shows every key with its value and meaning.
"""

from __future__ import annotations

from cssl.cli.stages import run_stage
from pretrain.config import PretrainConfig


def check(cfg: PretrainConfig) -> str | None:
    return None if cfg.data.manifest else "data.manifest is not set; give data.manifest=PATH"


def warn(cfg: PretrainConfig) -> list[str]:
    from cssl.train.schedule import schedule_warnings

    return schedule_warnings(cfg.optim.schedule, cfg.optim.max_steps, cfg.stop_after)


def run(cfg: PretrainConfig) -> None:
    from pretrain.train import main

    main(cfg)


def main(argv: list[str] | None = None, prog: str = "python -m pretrain") -> int:
    """The stage's command line (``cssl pretrain``, ``python -m pretrain``): parses, checks and runs."""
    return run_stage(prog, __doc__, PretrainConfig, check, run, argv, warn=warn)
