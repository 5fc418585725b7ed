"""Transcript normalisation and the fairseq letter format.

Normalised text is upper case A-Z, digits and apostrophes, words separated by single
spaces: accents are stripped (``café`` -> ``CAFE``), typographic apostrophes become
``'``, and every other character (punctuation, hyphens) becomes a word break.
The letter format (fairseq ``.ltr``) spells each word with spaces between letters and
``|`` after every word: ``HI THERE`` -> ``H I | T H E R E |``.
"""

from __future__ import annotations

import re
import unicodedata

WORD_SEP = "|"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_NOT_KEPT = re.compile(r"[^A-Z0-9' ]+")
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
