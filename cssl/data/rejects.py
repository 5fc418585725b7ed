"""Bookkeeping of skipped inputs: every rejected file is counted by reason and written down.

A long job never dies on one bad file; it skips it, and the :class:`Rejects` log says
which files were skipped and why, both as a summary (counts per reason) and as a
tab-separated file (``path<TAB>reason<TAB>detail``) next to the job's outputs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cssl.utils.io import atomic_write_lines


@dataclass(frozen=True)
class Reject:
    """One skipped input."""

    path: str
    """The file (or manifest line) that was skipped."""
    reason: str
    """Short stable reason, used for counting (``cannot decode``, ``empty transcript``...)."""
    detail: str = ""
    """Longer explanation for the rejects file."""


@dataclass
class Rejects:
    """The skipped inputs of a job, unique by (path, reason)."""

    items: dict[tuple[str, str], Reject] = field(default_factory=dict)
    """Skipped inputs keyed by (path, reason), so a file skipped every epoch counts once."""

    def add(self, path: str | Path, reason: str, detail: str = "") -> None:
        """Records a skipped input."""
        self.items.setdefault((str(path), reason), Reject(str(path), reason, detail))

    def extend(self, rejects: list[Reject] | Rejects) -> None:
        """Adds several (e.g. those a data-loader worker reported with a batch)."""
        for r in rejects.items.values() if isinstance(rejects, Rejects) else rejects:
            self.add(r.path, r.reason, r.detail)

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> Counter[str]:
        """Number of skipped inputs per reason."""
        return Counter(r.reason for r in self.items.values())

    def summary(self) -> str:
        """One line: ``3 skipped: 2 cannot decode, 1 zero length`` (or ``none skipped``)."""
        if not self.items:
            return "none skipped"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.counts().most_common())
        return f"{len(self.items)} skipped: {parts}"

    def write(self, path: str | Path) -> None:
        """Writes ``path<TAB>reason<TAB>detail`` lines, sorted by path."""
        rows = sorted(self.items.values(), key=lambda r: (r.path, r.reason))
        atomic_write_lines(path, [f"{r.path}\t{r.reason}\t{_one_line(r.detail)}" for r in rows])


def _one_line(text: str) -> str:
    return " ".join(text.split())
