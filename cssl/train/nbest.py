"""The N best validated models of a run, kept on disk, and their average (ESPnet's n-best model
averaging; fairseq's ``average_checkpoints.py`` averages the last N).

Each validation offers the model; it is kept (``model_<step>.pt``, weights only) while it ranks
among the ``keep`` best by dev WER, then CER, then the later update (or CER first). The ranking travels in the
run's checkpoints, so a resumed run keeps the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from cssl.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def dev_rank(wer: float, cer: float, metric: str = "wer") -> tuple[float, float]:
    """Dev scores in ranking order, lower better: ``metric`` (``"wer"`` or ``"cer"``) first, the other second."""
    return (wer, cer) if metric == "wer" else (cer, wer)


@dataclass(frozen=True)
class Ranked:
    """One kept validation."""

    step: int
    """Update after which the model was validated."""
    wer: float
    """Its dev WER."""
    cer: float
    """Its dev CER."""

    def key(self, metric: str = "wer") -> tuple[float, float, int]:
        """Lower is better: ``metric`` (WER or CER), then the other, then the later update."""
        return *dev_rank(self.wer, self.cer, metric), -self.step


class NBest:
    """The ``keep`` best validations of a run and their weight files in ``folder``, ranked by ``metric``
    (``"wer"`` or ``"cer"``) first."""

    def __init__(self, folder: Path, keep: int, metric: str = "wer") -> None:
        if metric not in ("wer", "cer"):
            raise ValueError(f"metric must be 'wer' or 'cer', got {metric!r}")
        self.folder, self.keep, self.metric = Path(folder), keep, metric
        self.ranked: list[Ranked] = []

    def __len__(self) -> int:
        return len(self.ranked)

    def path(self, step: int) -> Path:
        return self.folder / f"model_{step}.pt"

    def paths(self) -> list[Path]:
        """Weight files of the kept validations, best first."""
        return [self.path(r.step) for r in self.ranked]

    def offer(self, step: int, wer: float, cer: float, weights: Callable[[], dict[str, Tensor]] | None) -> bool:
        """Ranks a validation; keeps it when it is among the best. ``weights`` gives the model's state
        dict, called only when the model is kept; None on the processes that write no files (every
        process ranks alike, one writes)."""
        entry = Ranked(step, wer, cer)
        ranked = sorted([*self.ranked, entry], key=lambda r: r.key(self.metric))
        dropped, self.ranked = ranked[self.keep:], ranked[:self.keep]
        kept = entry in self.ranked
        if weights is not None:
            if kept:
                save_checkpoint(self.path(step), {"model": {k: v.detach().cpu().clone() for k, v in weights().items()},
                                                  "step": step, "wer": wer, "cer": cer})
            for gone in dropped:
                self.path(gone.step).unlink(missing_ok=True)
        return kept

    def state_dict(self) -> list[dict]:
        return [asdict(r) for r in self.ranked]

    def load_state_dict(self, state: list[dict]) -> None:
        # A run killed after a checkpoint may have dropped a kept file since (a better model came);
        # the resumed run validates that better model again, so leaving the entry out ranks as before.
        self.ranked = [Ranked(**d) for d in state if self.path(d["step"]).is_file()]

    def average(self) -> dict[str, Tensor]:
        """The mean of the kept models' weights (:func:`average_state_dicts`)."""
        missing = [p for p in self.paths() if not p.is_file()]
        if missing:
            raise CheckpointError(f"{missing[0]}: a kept model of the n-best average is missing "
                                  f"({len(missing)} of {len(self)}); set average_best=1 to skip averaging")
        return average_state_dicts([load_checkpoint(p)["model"] for p in self.paths()])


def average_state_dicts(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Element-wise mean of floating-point tensors (summed in float64, returned in each tensor's dtype);
    other tensors (counters, integer buffers) come from the first state dict."""
    if not states:
        raise ValueError("no state dicts to average")
    keys = set(states[0])
    for i, state in enumerate(states[1:], 1):
        if set(state) != keys:
            raise ValueError(f"state dict {i} has other keys than the first: {sorted(keys ^ set(state))[:5]}")
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            total = torch.stack([s[key].to(torch.float64) for s in states]).sum(dim=0)  # (*shape)
            out[key] = (total / len(states)).to(first.dtype)
        else:
            out[key] = first.clone()
    return out
