"""Saving and restoring the whole state of a training run (both stages).

A training checkpoint holds ``kind`` (``pretrain`` or ``finetune``), ``config``, ``model``,
``optimizer``, ``step``, ``stream`` (data position), ``rng`` (every process's generator
states, in rank order), ``health`` and whatever the stage adds (``vocab``, ``state``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate import Accelerator

from cssl.train.batch_stream import BatchStream
from cssl.train.checkpoint import (
    STEP_FILE,
    CheckpointError,
    load_checkpoint,
    load_latest,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cssl.train.health import Health
from cssl.utils.config import to_dict
from cssl.utils.io import check_writable, hold_lock, remove_stale_temporaries


def gather_rng_states(accel: Accelerator) -> list:
    """Every process's generator states, in rank order (for exact multi-process resume)."""
    from accelerate.utils import gather_object

    return gather_object([rng_state()]) if accel.num_processes > 1 else [rng_state()]


def save_training(accel: Accelerator, path: Path, kind: str, cfg: Any, model, optimizer, stream: BatchStream,
                  health: Health, step: int, **extra: Any) -> None:
    """Writes the run's state from the main process; a ``checkpoint_<step>.pt`` also refreshes
    ``last.pt`` and prunes old step checkpoints. Every process must call it (RNG states are gathered)."""
    rngs = gather_rng_states(accel)
    position = stream.gathered_state(accel)
    if accel.is_main_process:
        payload = {
            "kind": kind,
            "config": to_dict(cfg),
            "model": accel.unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "stream": position,
            "rng": rngs,
            "health": health.state_dict(),
            **extra,
        }
        save_checkpoint(path, payload)
        if STEP_FILE.search(path.name):
            save_checkpoint(path.parent / "last.pt", payload)
            prune_checkpoints(path.parent, cfg.keep_checkpoints)
    accel.wait_for_everyone()


def restore_training(ckpt: dict, kind: str, hint: str, model, optimizer, stream: BatchStream, health: Health,
                     rank: int) -> dict:
    """Loads what :func:`save_training` wrote into the run's objects; returns the checkpoint."""
    if ckpt.get("kind") != kind:
        raise CheckpointError(f"resume: the checkpoint is not from {kind} ({ckpt.get('kind')}); {hint}")
    if "optimizer" not in ckpt:
        raise CheckpointError("resume: the checkpoint holds weights only (a release), not a run's state; start a new "
                              "run from its weights with init= instead")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    stream.load_state_dict(ckpt["stream"])
    health.load_state_dict(ckpt["health"])
    rngs = ckpt["rng"]
    set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
    return ckpt


def prepare_out_dir(out_dir: Path, is_main: bool) -> list[str]:
    """Before any work: proves ``out_dir`` writable, takes its lock (``out_dir/.lock``: two runs never write
    one folder at once) and removes temporaries an interrupted write left.

    Returns messages for the log (the temporaries removed).
    """
    if not is_main:
        return []
    check_writable(out_dir)
    hold_lock(out_dir / ".lock", f"out_dir {out_dir}")
    return [f"removed {p.name}, left by an interrupted checkpoint write" for p in remove_stale_temporaries(out_dir)]


def find_resume(resume: str | None, out_dir: Path) -> tuple[Path, dict, list[str]] | None:
    """The checkpoint to continue from: ``resume`` itself, or with ``auto`` the newest readable one
    in ``out_dir`` (a corrupt newest file is skipped and named in the returned notes)."""
    if not resume:
        return None
    if resume == "auto":
        return load_latest(out_dir)
    return Path(resume), load_checkpoint(resume), []
