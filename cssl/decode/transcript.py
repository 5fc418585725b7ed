"""What recognition returns: a transcript with its words' times and confidences."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Word:
    """A recognised word with its time span and confidence."""

    word: str
    """The word (upper case)."""
    start: float
    """Start time in seconds."""
    end: float
    """End time in seconds."""
    confidence: float
    """Calibrated probability of the word's best path, in [0, 1]."""


@dataclass
class Transcript:
    """What :meth:`Recognizer.transcribe` returns."""

    text: str
    """The words joined by spaces."""
    words: list[Word] = field(default_factory=list)
    """Per-word times and confidences."""
    seconds: float = 0.0
    """Audio duration."""
    log_likelihood: float | None = None
    """CTC log-likelihood of ``text`` per symbol (letters and word separators) under the calibrated
    probabilities, a sequence-level confidence (``exp`` of it: the geometric-mean probability per
    symbol); None for an empty transcript."""
