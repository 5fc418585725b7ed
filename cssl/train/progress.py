"""Training progress: a console record per log interval, TensorBoard scalars, a JSONL history.

The console record gives the step, the metrics, the learning rate, the throughput in
audio seconds per wall second and the time left; the same numbers go to TensorBoard
and to ``metrics.jsonl`` (one JSON object per logged step), which plots are drawn from.
On a terminal the records scroll above a progress bar (:class:`cssl.utils.progress.ProgressLine`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from cssl.utils.io import atomic_write_lines
from cssl.utils.progress import ProgressLine


class Progress:
    """Logs metrics of the main process; silent (and writes nothing) on other ranks."""

    def __init__(self, out_dir: str | Path, total_steps: int, enabled: bool = True, start_step: int = 0,
                 tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.total = total_steps
        self.start_step = start_step
        self.started = time.monotonic()
        self.audio_seconds = 0.0
        self.out_dir = Path(out_dir)
        self.writer = None
        self.meter = ProgressLine("train", total_steps, unit="updates", stream=sys.stdout, enabled=enabled,
                                  initial=start_step, every=math.inf, summary=False)
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._keep_history_until(start_step)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    def _keep_history_until(self, step: int) -> None:
        """Drops records after ``step`` (a resumed run logs them again; a fresh run keeps none)."""
        path = self.out_dir / "metrics.jsonl"
        if path.is_file():
            kept = [r for r in read_history(path) if step > 0 and r["step"] <= step]
            atomic_write_lines(path, [json.dumps(r) for r in kept])

    def add_audio(self, seconds: float) -> None:
        """Counts audio processed (for the throughput figure)."""
        self.audio_seconds += seconds

    def log(self, step: int, metrics: dict[str, float], split: str = "train") -> None:
        """Prints one line and records the metrics of ``step``."""
        if not self.enabled:
            return
        elapsed = max(1e-9, time.monotonic() - self.started)
        done = max(1, step - self.start_step)
        record: dict[str, Any] = {"step": step, "split": split, **metrics}
        if split == "train":
            record["audio_s_per_s"] = self.audio_seconds / elapsed
            eta = elapsed / done * max(0, self.total - step)
            record["eta_min"] = eta / 60
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                    self.writer.add_scalar(f"{split}/{key}", value, step)
        self.meter.write(self.format(record))
        if split == "train":
            self.meter.update(step, " ".join(f"{k} {_fmt(v)}" for k, v in list(metrics.items())[:2]))

    def format(self, record: dict[str, Any]) -> str:
        """``[train] step 120/1000 (12%) loss 3.21 ... | 41.3 audio s/s | eta 4.2 min``."""
        step = record["step"]
        head = f"[{record['split']}] step {step}/{self.total} ({100 * step / max(1, self.total):.0f}%)"
        skip = {"step", "split", "audio_s_per_s", "eta_min"}
        body = " ".join(f"{k} {_fmt(v)}" for k, v in record.items() if k not in skip)
        tail = ""
        if "audio_s_per_s" in record:
            tail = f" | {record['audio_s_per_s']:.1f} audio s/s | eta {record['eta_min']:.1f} min"
        return f"{head} {body}{tail}"

    def message(self, text: str) -> None:
        """A free-form line from the main process."""
        self.meter.write(text)

    def close(self) -> None:
        self.meter.close()
        if self.writer is not None:
            self.writer.close()


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut off by a kill mid-write
            continue
    return records


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
