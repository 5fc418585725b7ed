"""A progress line for loops outside training (evaluation, LM tuning, probing): done/total,
rate, ETA and a short status, on stderr; redrawn every second on a terminal, printed every
10 seconds (and at the end) in a log."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


class Ticker:
    """``evaluate: 120/400 utterances (30%), 5.2 /s, ETA 0:00:54, WER so far 0.231``."""

    def __init__(self, what: str, total: int, unit: str = "utterances", stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = self.last = time.monotonic()
        self.done = 0
        self.status = ""

    def update(self, done: int, status: str = "") -> None:
        """Records progress; prints when a second (terminal) or ten (log) have passed."""
        self.done, self.status = done, status
        now = time.monotonic()
        if self.enabled and now - self.last >= (1.0 if self.tty else 10.0):
            self.last = now
            self._print(final=False)

    def close(self, status: str | None = None) -> None:
        """Prints the final line."""
        if status is not None:
            self.status = status
        if self.enabled:
            self._print(final=True)

    def line(self) -> str:
        """The current progress line."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        share = self.done / self.total if self.total else 1.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        text = f"{self.what}: {self.done}/{self.total} {self.unit} ({100 * share:.0f}%), {rate:.1f} /s, ETA {clock(eta)}"
        return f"{text}, {self.status}" if self.status else text

    def _print(self, final: bool) -> None:
        if self.tty:
            print("\r" + self.line() + "\033[K", end="\n" if final else "", file=self.stream, flush=True)
        else:
            print(self.line(), file=self.stream, flush=True)


def clock(seconds: float) -> str:
    """``H:MM:SS``, or ``?`` when unknown."""
    if math.isinf(seconds) or math.isnan(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
