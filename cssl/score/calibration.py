"""Probability calibration of a CTC model: a fitted temperature, word confidences, ECE.

Notation: T frames, V vocabulary; temperature tau divides the logits before softmax.

The temperature is fitted on a held-out set by minimising the negative log-likelihood
(for CTC: the CTC loss of the reference transcripts) over log(tau) with a golden-section
search: NLL(tau) is smooth and unimodal in practice, and a scalar search needs no
gradients through the decoder. Word confidence is the product of the best-path
probabilities of the frames that emit the word's characters; expected calibration error
(ECE) compares confidences with word correctness from the WER alignment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def fit_temperature(nll: Callable[[float], float], low: float = 0.25, high: float = 8.0, iters: int = 40) -> float:
    """The tau in [low, high] minimising ``nll(tau)`` (golden-section search over log tau)."""
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(math.exp(c)), nll(math.exp(d))
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(math.exp(d))
    return math.exp((a + b) / 2)


@dataclass
class WordConfidence:
    """A decoded word with its confidence."""

    word: str
    """The word."""
    confidence: float
    """Product of the best-path probabilities of its frames, in [0, 1]."""
    start: int
    """First frame of the word."""
    end: int
    """Frame after the word's last character."""


def word_confidences(log_probs: Tensor, symbols: Sequence[str], blank: int = 0, word_sep: str = "|") -> list[WordConfidence]:
    """Greedy path words of one utterance (log_probs (T, V)) with their confidences and frame spans."""
    best_lp, best = log_probs.float().max(dim=-1)  # (T,), (T,)
    words: list[WordConfidence] = []
    chars, score, start, prev = [], 0.0, None, blank
    for t, (sym, lp) in enumerate(zip(best.tolist(), best_lp.tolist())):
        emits = sym != blank and sym != prev
        prev = sym
        if not emits:
            if chars and sym != blank:
                score += lp  # a repeated frame of the same character belongs to it
            continue
        if symbols[sym] == word_sep:
            if chars:
                words.append(WordConfidence("".join(chars), math.exp(score), start, t))
            chars, score, start = [], 0.0, None
            continue
        if start is None:
            start = t
        chars.append(symbols[sym])
        score += lp
    if chars:
        words.append(WordConfidence("".join(chars), math.exp(score), start or 0, len(best)))
    return words


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: sum over equal-width confidence bins of (share of words) x |accuracy - mean confidence|."""
    if not confidences:
        return 0.0
    conf = torch.tensor(confidences, dtype=torch.float64)
    hit = torch.tensor(correct, dtype=torch.float64)
    index = (conf * bins).long().clamp(max=bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = index == b
        if sel.any():
            ece += float(sel.double().mean()) * abs(float(hit[sel].mean()) - float(conf[sel].mean()))
    return ece
