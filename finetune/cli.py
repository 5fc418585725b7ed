"""CTC fine-tuning (stage 2) on labeled audio.

From a pretraining checkpoint of ours, a torchaudio ``Wav2Vec2Model`` state dict, or from
scratch (``init=null``: the supervised-only baseline, same code path)::

    cssl finetune configs/finetune/tiny.yaml init=runs/pretrain-tiny/last.pt \\
        data.manifest=corpus/train.tsv data.valid_manifest=corpus/dev.tsv

Choosing the learning rate and frozen depth by K-fold cross-validation on the labeled
set (the grid is ``cv.grid`` in the config; see ``finetune/cv.py``), then the final run::

    cssl finetune configs/finetune/tiny.yaml data.manifest=corpus/train.jsonl \\
        data.valid_manifest=corpus/dev.jsonl --cv 3

Several GPUs (without GPUs: N CPU processes over gloo)::

    accelerate launch --multi_gpu --num_processes 4 -m cssl finetune configs/finetune/base.yaml ...

``--print-config`` shows every key with its value and meaning.
"""

from __future__ import annotations

from cssl.cli.stages import run_stage
from finetune.config import FinetuneConfig


def check(cfg: FinetuneConfig) -> str | None:
    if not cfg.data.manifest:
        return "data.manifest is not set; give data.manifest=PATH (a labeled manifest)"
    if cfg.cv.folds == 1 or cfg.cv.folds < 0:
        return f"cv.folds (--cv) must be 0 (off) or at least 2, got {cfg.cv.folds}"
    return None


def warn(cfg: FinetuneConfig) -> list[str]:
    from cssl.train.schedule import schedule_warnings

    out = schedule_warnings(cfg.optim.schedule, cfg.optim.max_steps, cfg.stop_after)
    if cfg.freeze.encoder_steps >= cfg.optim.max_steps:
        out.append(f"freeze.encoder_steps={cfg.freeze.encoder_steps} is not shorter than optim.max_steps="
                   f"{cfg.optim.max_steps}: only the CTC head will ever train")
    if not cfg.data.valid_manifest:
        out.append("no data.valid_manifest: no early stopping and no calibration; best.pt will be the last model")
    return out


def run(cfg: FinetuneConfig) -> None:
    from finetune.train import main

    if cfg.cv.folds >= 2:
        from finetune.cv import cross_validate

        cross_validate(cfg, main)
    else:
        main(cfg)


def main(argv: list[str] | None = None, prog: str = "python -m finetune") -> int:
    """The stage's command line (``cssl finetune``, ``python -m finetune``): parses, checks and runs."""
    return run_stage(prog, __doc__, FinetuneConfig, check, run, argv,
                     flags={"--cv": ("cv.folds", "K: choose settings by K-fold cross-validation first")}, warn=warn)
