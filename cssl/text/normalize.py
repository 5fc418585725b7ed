"""Transcript normalisation and the fairseq letter format.

Normalised text is upper case A-Z, digits and apostrophes, words separated by single
spaces. In order: typographic apostrophes (’ ‘ ` ´) become ``'``; letters are decomposed
(Unicode NFKD) and their accents dropped (``café`` -> ``CAFE``, ``ﬁ`` -> ``FI``); text
is upper-cased; every other character (punctuation, hyphens, symbols, letters of other
scripts) becomes a word break; an apostrophe not between two letters or digits is
dropped. Nothing is dropped silently: :func:`normalization_report` counts, per
character, what was transliterated and what was dropped, and the vocabulary builder,
fine-tuning and evaluation print those counts.
The letter format (fairseq ``.ltr``) spells each word with spaces between letters and
``|`` after every word: ``HI THERE`` -> ``H I | T H E R E |``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

WORD_SEP = "|"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_NOT_KEPT = re.compile(r"[^A-Z0-9' ]+")
_KEPT = re.compile(r"^[A-Z0-9']+$")
_LONE_APOSTROPHE = re.compile(r"(?<![A-Z0-9])'|'(?![A-Z0-9])")


def normalize_text(text: str) -> str:
    """Upper-cases, strips accents and punctuation, collapses spaces; '' if nothing is left."""
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).upper()
    text = _NOT_KEPT.sub(" ", text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """The words of a normalised transcript (what WER counts)."""
    return normalize_text(text).split()


def to_letters(text: str) -> str:
    """``HI THERE`` -> ``H I | T H E R E |`` (the fairseq ``.ltr`` line)."""
    return " ".join(" ".join(word) + f" {WORD_SEP}" for word in words(text))


def from_letters(line: str) -> str:
    """Inverse of :func:`to_letters`: ``H I | T H E R E |`` -> ``HI THERE``."""
    spelled = "".join(line.split())
    return " ".join(w for w in spelled.split(WORD_SEP) if w)


@dataclass
class NormalizationReport:
    """What normalisation did to a set of transcripts, per character."""

    transliterated: Counter[str] = field(default_factory=Counter)
    """``"é -> E"`` style keys: characters replaced by others, with their counts."""
    dropped: Counter[str] = field(default_factory=Counter)
    """Characters turned into word breaks (punctuation, symbols, other scripts), with their counts."""

    def __bool__(self) -> bool:
        return bool(self.transliterated or self.dropped)

    def summary(self, limit: int = 12) -> str:
        """``dropped: ',' x12, '-' x3; transliterated: é -> E x2`` (most frequent first)."""
        parts = []
        if self.dropped:
            parts.append("dropped (read as word breaks): " + _counts(self.dropped, limit, quote=True))
        if self.transliterated:
            parts.append("transliterated: " + _counts(self.transliterated, limit, quote=False))
        return "; ".join(parts) or "nothing changed besides case"


def normalization_report(texts: Iterable[str]) -> NormalizationReport:
    """Counts, over ``texts``, the characters :func:`normalize_text` replaces or drops (case aside)."""
    report = NormalizationReport()
    for text in texts:
        for ch in text:
            if ch.isspace() or ch in _APOSTROPHE_CHARS:
                continue
            kept = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)).upper()
            if not _KEPT.match(kept):
                report.dropped[ch] += 1
            elif kept != ch.upper():
                report.transliterated[f"{ch} -> {kept}"] += 1
    return report


_APOSTROPHE_CHARS = frozenset("'\u2019\u2018`\u00b4")


def _counts(counter: Counter[str], limit: int, quote: bool) -> str:
    items = counter.most_common()
    shown = ", ".join(f"{k!r} x{n}" if quote else f"{k} x{n}" for k, n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
