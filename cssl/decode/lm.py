"""Word n-gram language models with interpolated Kneser-Ney smoothing, written as ARPA.

    cssl lm build transcripts.txt lm.arpa --order 3

The ARPA file is what torchaudio's ``ctc_decoder`` (flashlight-text, KenLM reader) loads
for beam search, so the language-model part of an ASR system needs no external binary.

For order n, the highest order uses raw counts, lower orders use continuation counts
(how many distinct words precede an n-gram), each with an absolute discount
D = n1 / (n1 + 2 n2) from the count-of-counts. Probabilities are interpolated with the
lower order, so the ARPA file stores, for each n-gram, log10 of its interpolated
probability and log10 of its back-off weight (the mass left for unseen continuations).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cssl.text.normalize import words
from cssl.utils.io import atomic_write_lines

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


@dataclass
class NGramModel:
    """Interpolated probabilities and back-off weights per order (1-based), in natural log."""

    order: int
    """Highest n-gram order."""
    logprob: list[dict[tuple[str, ...], float]]
    """logprob[n - 1][ngram]: log P(last word | preceding words)."""
    backoff: list[dict[tuple[str, ...], float]]
    """backoff[n - 1][ngram]: log back-off weight of the context ``ngram``."""

    def score(self, context: tuple[str, ...], word: str) -> float:
        """log P(word | context) with back-off (natural log)."""
        context = context[-(self.order - 1):] if self.order > 1 else ()
        penalty = 0.0
        while True:
            gram = (*context, word)
            got = self.logprob[len(gram) - 1].get(gram)
            if got is not None:
                return penalty + got
            if not context:
                return penalty + self.logprob[0].get((UNK,), -99.0)
            penalty += self.backoff[len(context) - 1].get(context, 0.0)
            context = context[1:]


def build_ngram(sentences: Iterable[str], order: int = 3) -> NGramModel:
    """Counts normalised ``sentences`` and builds an interpolated Kneser-Ney model."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
    for sentence in sentences:
        tokens = [BOS, *words(sentence), EOS]
        if len(tokens) == 2:
            continue
        for n in range(1, order + 1):
            for i in range(len(tokens) - n + 1):
                gram = tuple(tokens[i : i + n])
                if gram != (BOS,):
                    counts[n - 1][gram] += 1
    if not counts[0]:
        raise ValueError("no words in the text: the language model needs transcripts")
    adjusted = _continuation_counts(counts)
    logprob: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]
    backoff: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]
    vocab = sorted({g[0] for g in adjusted[0]} | {EOS})
    uniform = 1.0 / (len(vocab) + 1)  # + <unk>
    for n in range(1, order + 1):
        grams = adjusted[n - 1]
        discount = _discount(grams)
        by_context: dict[tuple[str, ...], list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        for gram, c in grams.items():
            by_context[gram[:-1]].append((gram, c))
        for context, items in by_context.items():
            total = sum(c for _, c in items)
            gamma = discount * len(items) / total  # mass moved to the lower order
            for gram, c in items:
                lower = math.exp(logprob[n - 2][gram[1:]]) if n > 1 else uniform
                logprob[n - 1][gram] = math.log(max(c - discount, 0.0) / total + gamma * lower)
            if n > 1:
                backoff[n - 2][context] = math.log(gamma) if gamma > 0 else -99.0
    logprob[0][(UNK,)] = math.log(uniform * _discount(adjusted[0]) * len(adjusted[0]) / sum(adjusted[0].values()))
    logprob[0][(BOS,)] = -99.0
    return NGramModel(order, logprob, backoff)


def write_arpa(model: NGramModel, path: str | Path) -> None:
    """ARPA text: counts header, then ``log10 p<TAB>words<TAB>log10 backoff`` per order."""
    lines = ["", "\\data\\"]
    lines += [f"ngram {n}={len(model.logprob[n - 1])}" for n in range(1, model.order + 1)]
    to10 = 1 / math.log(10)
    for n in range(1, model.order + 1):
        lines += ["", f"\\{n}-grams:"]
        for gram, lp in sorted(model.logprob[n - 1].items()):
            row = f"{lp * to10:.6f}\t{' '.join(gram)}"
            if n < model.order and gram in model.backoff[n - 1]:
                row += f"\t{model.backoff[n - 1][gram] * to10:.6f}"
            lines.append(row)
    lines += ["", "\\end\\"]
    atomic_write_lines(path, lines)


def _continuation_counts(counts: list[Counter]) -> list[Counter]:
    """Highest order keeps its counts; lower orders count distinct left contexts (KN)."""
    order = len(counts)
    adjusted = [Counter() for _ in range(order)]
    adjusted[-1] = Counter(counts[-1])
    for n in range(order - 1, 0, -1):
        for gram in counts[n]:
            adjusted[n - 1][gram[1:]] += 1
        for gram, c in counts[n - 1].items():
            if gram[0] == BOS:  # n-grams at the sentence start have no left context: raw counts
                adjusted[n - 1][gram] = c
    return adjusted


def _discount(grams: Counter) -> float:
    n1 = sum(1 for c in grams.values() if c == 1)
    n2 = sum(1 for c in grams.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
