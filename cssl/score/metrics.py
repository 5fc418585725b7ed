"""Word and character error rates through jiwer (4.x: ``process_words`` / ``process_characters``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from cssl.utils.errors import DataError


@dataclass
class ErrorRates:
    """Corpus-level WER and CER with their edit counts."""

    wer: float
    """Word errors / reference words."""
    cer: float
    """Character errors / reference characters (spaces included)."""
    words: int
    """Reference words."""
    word_errors: int
    """Substitutions + deletions + insertions over words."""


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """Corpus WER/CER; empty hypotheses count as deletions, empty references are skipped.

    Raises :class:`~cssl.utils.errors.DataError` when no reference has a word: an error rate
    over nothing is not 0, it is undefined.
    """
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        raise DataError(f"nothing to score: {len(references)} utterances, none with a reference word")
    refs = [r for r, _ in pairs]
    hyps = [h if h.strip() else "" for _, h in pairs]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    errors = words.substitutions + words.deletions + words.insertions
    total = words.substitutions + words.deletions + words.hits
    return ErrorRates(words.wer, chars.cer, total, errors)
