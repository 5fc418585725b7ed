"""The update loop both training stages run: a thin layer around accelerate.

A stage (:class:`Stage`: ``pretrain/train.py``, ``finetune/train.py``) says what one batch
computes, what a log line and a validation hold, and what a checkpoint adds; the loop
does the rest the same way for both:

1. set the learning rate of update ``step`` from the schedule;
2. draw this process's share of the update's batches (``optim.accumulation`` in all
   processes), forward and backward each, gradients synchronised on the last one;
3. sum the stage's per-batch figures over processes, skip the update if the loss is not
   finite (:class:`~cssl.train.health.Health` stops the run after too many), otherwise
   normalise by the update's count, clip and step;
4. log every ``log_every`` updates, validate every ``valid_every`` (and at the end),
   checkpoint every ``save_every`` (and at the end, and when stopping early), stop at
   ``max_steps``, ``stop_after``, ``max_minutes`` or when the stage says so.

Run setup and resume are here too (:func:`open_run`, :func:`resume_run`), so the two
stages differ only in what is theirs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from cssl.data.dataset import Batch
from cssl.train.batch_stream import BatchStream
from cssl.train.health import Health
from cssl.train.progress import Progress
from cssl.train.runtime import (
    describe_runtime,
    gather_rejects,
    global_sum,
    guarded_update,
    local_accumulation,
    make_accelerator,
    seed_everything,
    set_lr,
    set_threads,
    stop_reason,
)
from cssl.train.state import find_resume, prepare_out_dir, restore_training, save_training
from cssl.utils.config import ConfigError
from cssl.utils.io import release_lock


class Stage:
    """What a training stage plugs into :func:`train`; subclasses override the hooks they need."""

    kind: str = ""
    """Checkpoint kind (``pretrain``, ``finetune``): resuming checks it."""
    sums: tuple[str, ...] = ("loss", "count", "audio_s")
    """Per-update figures summed over batches and processes; ``loss`` and ``count`` normalise the update."""
    validates: bool = False
    """Whether :meth:`validate` runs every ``valid_every`` updates."""

    def start_update(self, model: torch.nn.Module, step: int, progress: Progress) -> None:
        """Before update ``step``: training mode, freezing rules."""
        model.train()

    def forward(self, model: torch.nn.Module, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """One batch: the loss to backpropagate (a sum) and its figures (keys of :attr:`sums`)."""
        raise NotImplementedError

    def log(self, step: int, totals: dict[str, float], lr: float, grad_norm: float) -> tuple[dict[str, float], list[str]]:
        """The log line of an update from its summed figures, and warnings to print."""
        return {"loss": totals["loss"] / max(totals["count"], 1.0), "lr": lr, "grad_norm": grad_norm}, []

    def validate(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        """Validation figures at ``step`` (every process calls it)."""
        raise NotImplementedError

    def judge(self, step: int, metrics: dict[str, float], progress: Progress) -> tuple[bool, bool]:
        """After a validation: ``(is_best, stop)`` (save ``best.pt``; stop early)."""
        return False, False

    def checkpoint_extra(self) -> dict[str, Any]:
        """What a checkpoint holds besides the run state (vocabulary...)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Stage counters saved in checkpoints (early-stopping state...)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""

    def after_save(self, out_dir: Path) -> None:
        """After a step checkpoint, on the main process (plots)."""


@dataclass
class Run:
    """The objects of one training run that every stage has."""

    cfg: Any
    """The stage config (a :class:`~cssl.train.config.RunConfig` with ``optim`` and ``data``)."""
    accel: Accelerator
    """Device, processes and precision."""
    out_dir: Path
    """Where checkpoints, logs and plots go."""
    accumulation: int
    """Batches this process accumulates per update."""
    notes: list[str] = field(default_factory=list)
    """Lines for the log once progress reporting starts."""
    step: int = 0
    """Updates done."""
    resumed_from: Path | None = None
    """The checkpoint the run continued from."""
    model: Any = None
    """The model as :func:`train` prepared it (set when training ends)."""
    optimizer: Any = None
    """The optimizer as :func:`train` prepared it (set when training ends)."""
    progress: Progress | None = None
    """The run's progress reporter (set when training ends, still open for the stage's closing lines)."""

    @property
    def rejects_path(self) -> Path:
        """This process's file of skipped training inputs."""
        rank = self.accel.process_index
        return self.out_dir / ("rejects.tsv" if rank == 0 else f"rejects.rank{rank}.tsv")


def releasing_out_dir(main: Callable[[Any], Path]) -> Callable[[Any], Path]:
    """A stage's ``main(cfg)`` that lets go of its ``out_dir`` lock (taken by :func:`open_run`) when it
    returns or fails, so that the same process, or another, may run there next."""
    @functools.wraps(main)
    def run(cfg: Any) -> Path:
        try:
            return main(cfg)
        finally:
            release_lock(Path(cfg.out_dir) / ".lock")
    return run


def open_run(cfg: Any, find_unused: bool = False) -> Run:
    """Threads, accelerator, seeds, a writable ``out_dir`` and this process's share of an update."""
    if not str(cfg.out_dir).strip():
        raise ConfigError("out_dir is empty: name the folder for checkpoints and logs (out_dir=runs/NAME)")
    set_threads(cfg.threads)
    accel = make_accelerator(cfg.mixed_precision, find_unused=find_unused)
    seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    notes = prepare_out_dir(out_dir, accel.is_main_process)
    return Run(cfg, accel, out_dir, local_accumulation(cfg.optim.accumulation, accel.num_processes), notes)


def resume_run(run: Run, stage: Stage, model, optimizer, stream: BatchStream, health: Health) -> None:
    """Continues from ``cfg.resume`` (``auto``: the newest readable checkpoint in ``out_dir``) if set."""
    found = find_resume(run.cfg.resume, run.out_dir)
    if not found:
        return
    path, ckpt, skipped = found
    hint = "use it as init= of a stage instead"
    restore_training(ckpt, stage.kind, hint, model, optimizer, stream, health, run.accel.process_index)
    stage.load_state_dict(ckpt.get("state", {}))
    run.step, run.resumed_from = int(ckpt["step"]), path
    run.notes += skipped


def train(run: Run, stage: Stage, model, optimizer, stream: BatchStream, health: Health, banner: str) -> Path | None:
    """Runs updates until the run ends; returns the last step checkpoint written (None if none)."""
    cfg, accel, o = run.cfg, run.accel, run.cfg.optim
    model, optimizer = accel.prepare(model, optimizer)
    progress = Progress(run.out_dir, o.max_steps, accel.is_main_process, start_step=run.step)
    for note in run.notes:
        progress.message(note)
    progress.message(f"{banner}: {describe_runtime(accel)}; {o.accumulation} batch(es) per update"
                     + (f"; resumed from {run.resumed_from} at step {run.step}" if run.resumed_from else ""))
    started, last, stop = time.monotonic(), None, False
    while run.step < o.max_steps and not stop:
        step = run.step
        stage.start_update(accel.unwrap_model(model), step, progress)
        lr = set_lr(optimizer, o.lr, step, o.max_steps, o.schedule)
        sums = _accumulate(stage, accel, model, stream, step, run.accumulation)
        totals = dict(zip(stage.sums, global_sum(accel, [sums[k] for k in stage.sums])))
        grad_norm = guarded_update(accel, model, optimizer, health, totals["loss"], totals["count"], o.grad_clip, step)
        if math.isnan(grad_norm):
            progress.message(f"step {step}: non-finite loss or gradients, update skipped ({health.nonfinite_total} so far)")
        run.step = step = step + 1
        progress.add_audio(totals["audio_s"])
        if step % cfg.log_every == 0 or step == o.max_steps:
            metrics, warnings = stage.log(step, totals, lr, grad_norm)
            progress.log(step, metrics)
            for warning in warnings:
                progress.message(warning)
        if stage.validates and (step % cfg.valid_every == 0 or step == o.max_steps):
            metrics = stage.validate(model, step)
            progress.log(step, metrics, split="valid")
            best, stop = stage.judge(step, metrics, progress)
            if best:
                _save(run, stage, model, optimizer, stream, health, run.out_dir / "best.pt")
        early = stop_reason(cfg.max_minutes, cfg.stop_after, step, time.monotonic() - started)
        if step % cfg.save_every == 0 or step == o.max_steps or early or stop:
            last = run.out_dir / f"checkpoint_{step}.pt"
            _save(run, stage, model, optimizer, stream, health, last)
            if accel.is_main_process:
                stage.after_save(run.out_dir)
        if early:
            progress.message(f"stopping at step {step}: {early}")
            stop = True
    stream.rejects = gather_rejects(accel, stream.rejects)  # every process's: the closing summary is the run's
    if accel.is_main_process and len(stream.rejects):
        stream.rejects.write(run.out_dir / "rejects.tsv")
    run.model, run.optimizer, run.progress = model, optimizer, progress  # for the stage's closing work
    return last


def save_run(run: Run, stage: Stage, stream: BatchStream, health: Health, path: Path) -> None:
    """Writes the run's current state to ``path`` (after :func:`train`: e.g. a ``best.pt`` of the last model)."""
    _save(run, stage, run.model, run.optimizer, stream, health, path)


def _accumulate(stage: Stage, accel: Accelerator, model, stream: BatchStream, step: int, n: int) -> dict[str, float]:
    """This process's ``n`` batches of the update: forward, backward (synchronised on the last), summed figures."""
    sums = dict.fromkeys(stage.sums, 0.0)
    for i in range(n):
        batch = next(stream).to(accel.device)
        sync = contextlib.nullcontext() if i == n - 1 else accel.no_sync(model)
        with sync, accel.autocast():
            loss, figures = stage.forward(model, batch, step)
        accel.backward(loss)
        for key, value in figures.items():
            sums[key] += value
    return sums


def _save(run: Run, stage: Stage, model, optimizer, stream: BatchStream, health: Health, path: Path) -> None:
    save_training(run.accel, path, stage.kind, run.cfg, model, optimizer, stream, health, run.step,
                  state=stage.state_dict(), **stage.checkpoint_extra())
