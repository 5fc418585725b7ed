"""What a manifest holds, whatever its format: entries (an audio file, its length, its transcript,
its speaker) under a root folder, and the error a broken manifest raises."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cssl import SAMPLE_RATE
from cssl.utils.errors import UserError


class ManifestError(UserError, ValueError):
    """A manifest that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    """One utterance of a manifest."""

    path: str
    """Audio file, relative to the manifest root (or absolute)."""
    num_samples: int
    """Length in samples at 16 kHz: what bucketing and length filters use."""
    text: str | None = None
    """Transcript (words); None for unlabeled audio."""
    speaker: str | None = None
    """Speaker label when known (JSON lines only)."""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / SAMPLE_RATE


@dataclass
class Manifest:
    """A root folder and its utterances."""

    root: Path
    """Folder that relative entry paths are resolved against."""
    entries: list[Entry] = field(default_factory=list)
    """The utterances, in file order."""

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __getitem__(self, index: int) -> Entry:
        return self.entries[index]

    def audio_path(self, entry: Entry) -> Path:
        """Absolute path of an entry's audio file."""
        return Path(entry.path) if os.path.isabs(entry.path) else self.root / entry.path

    @property
    def labeled(self) -> bool:
        """True when every entry has a transcript."""
        return bool(self.entries) and all(e.text is not None for e in self.entries)

    @property
    def hours(self) -> float:
        """Total audio in hours."""
        return sum(e.num_samples for e in self.entries) / SAMPLE_RATE / 3600

    def subset(self, indices: Sequence[int]) -> Manifest:
        """A manifest with the given entries, same root."""
        return Manifest(self.root, [self.entries[i] for i in indices])

    def filter_length(self, min_samples: int = 0, max_samples: int | None = None) -> tuple[Manifest, int]:
        """Keeps entries within ``[min_samples, max_samples]``; returns it and the number dropped."""
        kept = [
            e for e in self.entries
            if e.num_samples >= min_samples and (max_samples is None or e.num_samples <= max_samples)
        ]
        return Manifest(self.root, kept), len(self.entries) - len(kept)
