"""Character vocabulary for CTC: blank, unknown, word boundary and the characters seen.

Index 0 is the CTC blank (``<blank>``), 1 is ``<unk>``, 2 is the word boundary ``|``;
the characters found in the transcripts follow in sorted order. Text is encoded as
its letters with ``|`` between words (no leading or trailing boundary), so decoding
the ids back gives the normalised transcript.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cssl.text.normalize import WORD_SEP, normalization_report, normalize_text
from cssl.utils.errors import DataError

BLANK = "<blank>"
UNK = "<unk>"
SPECIALS = (BLANK, UNK, WORD_SEP)


@dataclass(frozen=True)
class Vocabulary:
    """An ordered symbol list; ``symbols[0]`` is the CTC blank."""

    symbols: tuple[str, ...]
    """All symbols, specials first; a symbol's position is its id."""

    def __post_init__(self) -> None:
        if self.symbols[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {self.symbols[:3]}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("vocabulary symbols must be unique")
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Collects the characters of normalised ``texts`` seen at least ``min_count`` times."""
        counts = Counter(ch for text in texts for ch in normalize_text(text).replace(" ", ""))
        chars = sorted(ch for ch, n in counts.items() if n >= min_count)
        return cls(SPECIALS + tuple(chars))

    @property
    def blank(self) -> int:
        """Id of the CTC blank."""
        return 0

    @property
    def unk(self) -> int:
        """Id given to characters outside the vocabulary."""
        return 1

    @property
    def word_sep(self) -> int:
        """Id of the word boundary ``|``."""
        return 2

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """Normalises ``text`` and maps it to ids, ``|`` between words."""
        index = self._index  # type: ignore[attr-defined]
        spelled = WORD_SEP.join(normalize_text(text).split())
        return [index.get(ch, self.unk) for ch in spelled]

    def unknown_characters(self, texts: Iterable[str]) -> Counter[str]:
        """Characters of the normalised ``texts`` that the vocabulary lacks (encoded as ``<unk>``), counted."""
        index = self._index  # type: ignore[attr-defined]
        return Counter(ch for text in texts for ch in normalize_text(text).replace(" ", "") if ch not in index)

    def decode(self, ids: Iterable[int]) -> str:
        """Maps ids back to text: blanks dropped, ``|`` read as a word break."""
        chars = [self.symbols[i] for i in ids if i != self.blank]
        chars = ["?" if c == UNK else c for c in chars]
        return " ".join(w for w in "".join(chars).split(WORD_SEP) if w)

    def save(self, path: str | Path) -> None:
        """Writes ``{"symbols": [...]}`` as JSON."""
        Path(path).write_text(json.dumps({"symbols": list(self.symbols)}, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Reads a file written by :meth:`save`; errors name the file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(tuple(data["symbols"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}: not a cssl vocabulary file ({err})") from err

    def to_dict(self) -> dict[str, list[str]]:
        """For checkpoints: ``{"symbols": [...]}``."""
        return {"symbols": list(self.symbols)}


def transcript_notes(texts: list[str], vocab: Vocabulary, what: str) -> list[str]:
    """Lines for the log: what normalisation changed in ``texts`` and which of their characters
    ``vocab`` lacks (encoded as ``<unk>``: a model with this vocabulary never emits them)."""
    notes = []
    report = normalization_report(texts)
    if report:
        notes.append(f"{what}, normalisation: {report.summary()}")
    unknown = vocab.unknown_characters(texts)
    if unknown:
        notes.append(f"{what}: characters outside the vocabulary (encoded as <unk>, never emitted): "
                     + ", ".join(f"{ch!r} x{n}" for ch, n in unknown.most_common(12)))
    return notes
