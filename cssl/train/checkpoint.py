"""Checkpoints: written atomically, loaded safely, holding everything an exact resume needs.

A checkpoint is a dict of plain containers and tensors (``weights_only=True`` loads it):
``config`` (the stage config as a dict), ``model`` (state dict), ``optimizer``, ``step``,
``stream`` (the data position: epoch and batches consumed, or each shard's used entries), ``rng`` (torch, CUDA, numpy and Python
generator states), ``state`` (stage counters and history), plus anything the stage adds
(``vocab``, ``temperature``...). The model rebuilds from ``config`` alone.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cssl.utils.errors import UserError
from cssl.utils.io import atomic_write

STEP_FILE = re.compile(r"checkpoint_(\d+)\.pt$")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Writes ``payload`` to ``path`` via a temporary file and a rename (never half-written)."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp), size_hint=_tensor_bytes(payload))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint on the CPU with ``weights_only=True`` (no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable cssl checkpoint ({type(err).__name__}: {err})") from err


def load_latest(folder: str | Path) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest readable step checkpoint of ``folder`` (then ``last.pt``), loaded.

    Returns ``(path, checkpoint, notes)`` where ``notes`` names every newer file that could
    not be read (a corrupt or cut-off write), or None when the folder holds no checkpoint.
    """
    folder = Path(folder)
    candidates = [p for _, p in reversed(_step_files(folder))]
    if (folder / "last.pt").is_file():
        candidates.append(folder / "last.pt")
    notes = []
    for path in candidates:
        try:
            return path, load_checkpoint(path), notes
        except CheckpointError as err:
            notes.append(f"skipped {path.name}: {err.__cause__ or err}")
    if notes:
        raise CheckpointError(f"{folder}: no checkpoint there can be read ({'; '.join(notes)}); "
                              "remove them to start afresh, or resume= a checkpoint explicitly")
    return None


def _step_files(folder: str | Path) -> list[tuple[int, Path]]:
    folder = Path(folder)
    return sorted((int(m.group(1)), p) for p in folder.glob("checkpoint_*.pt") if (m := STEP_FILE.search(p.name)))


def _tensor_bytes(payload: Any) -> int:
    """Bytes of the tensors in a nested payload (a lower bound of the file size)."""
    if isinstance(payload, torch.Tensor):
        return payload.numel() * payload.element_size()
    if isinstance(payload, dict):
        return sum(_tensor_bytes(v) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(_tensor_bytes(v) for v in payload)
    return 0


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Deletes all but the ``keep`` newest step checkpoints (``best.pt``/``last.pt`` are kept)."""
    found = _step_files(folder)
    for _, path in found[: max(0, len(found) - keep)]:
        path.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """States of every generator training draws from (dropout, LayerDrop, shuffles)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": _python_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal.tolist()), gauss_next))


def _numpy_state() -> tuple:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)


def _python_state() -> tuple:
    version, internal, gauss_next = random.getstate()
    return (version, torch.tensor(internal, dtype=torch.int64), gauss_next)
