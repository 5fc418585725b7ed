"""The one progress display of long loops (evaluation, LM tuning, probing, alignment, synthesis,
training), on tqdm: a bar redrawn in place on a terminal; in a log (not a terminal) plain lines,
one every ``every`` seconds and one at the end, in tqdm's words (done/total, rate, ETA, status)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


def is_terminal(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class ProgressLine:
    """``evaluate:  30% 120/400 [00:23<00:53,  5.22utterances/s, WER so far 0.231]``.

    ``update(done, status)`` sets the absolute position; ``write(text)`` prints a line above the
    bar (a log record); ``close(status)`` prints the final line (in a log only with ``summary``).
    ``initial`` is where a resumed loop starts: the rate counts only what this run did.
    """

    def __init__(self, what: str, total: float, unit: str = "utterances", stream: TextIO | None = None,
                 enabled: bool = True, initial: float = 0, every: float = 10.0, summary: bool = True) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = is_terminal(self.stream)
        self.every = every
        self.summary = summary
        self.initial = self.done = initial
        self.status = ""
        self.start = self.last = time.monotonic()
        self.bar = None
        if enabled and self.tty:
            self.bar = tqdm(total=total, initial=initial, desc=what, unit=unit, file=self.stream,
                            dynamic_ncols=True, mininterval=1.0, leave=True)

    def update(self, done: float, status: str = "") -> None:
        """Records progress: redraws the bar (terminal) or prints a line once ``every`` seconds have passed (log)."""
        self.done, self.status = done, status
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update(done - self.bar.n)
        elif self.enabled and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def write(self, text: str) -> None:
        """A line of its own (a log record), above the bar on a terminal."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self, status: str | None = None) -> None:
        """Prints the final line."""
        if status is not None:
            self.status = status
        if self.bar is not None:
            self.bar.set_postfix_str(self.status, refresh=False)
            self.bar.update(self.done - self.bar.n)
            self.bar.close()
            self.bar = None
        elif self.enabled and self.summary:
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        """The current progress as one plain line."""
        return tqdm.format_meter(self.done, self.total, time.monotonic() - self.start, ncols=0, prefix=self.what,
                                 unit=self.unit, postfix=self.status or None, initial=self.initial)
