"""Choosing the beam decoder's LM weight and word score on a dev set.

The two numbers trade the acoustic model against the language model (``lm_weight``,
alpha) and against deletions (``word_score``, beta, added per emitted word). They depend
on the acoustic model's sharpness and the LM, so they are searched on held-out labeled
data, as with fairseq's and pyctcdecode's alpha/beta: every pair of a small grid decodes
the dev set, and the pair with the lowest WER (then CER) wins. The acoustic model runs
once per utterance; only the beam search is repeated.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cssl.data.manifest import read_manifest
from cssl.decode.beam import BeamDecoder
from cssl.score.metrics import error_rates
from cssl.text.normalize import normalize_text
from cssl.utils.errors import DataError, UsageError
from cssl.utils.progress import ProgressLine

LM_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0)
"""Default grid of LM weights (models fine-tuned on a minute of labels chose 2, once the largest, nearly always)."""
WORD_SCORES = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
"""Default grid of word scores with an LM."""
LEXICON_WORD_SCORES = (0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0)
"""Default grid of word scores for a word list without an LM (no LM score to weigh a word against silence)."""


@dataclass
class GridPoint:
    """Dev figures of one (LM weight, word score) pair."""

    lm_weight: float
    """LM weight tried."""
    word_score: float
    """Word score tried."""
    wer: float
    """Dev WER with it."""
    cer: float
    """Dev CER with it."""


@dataclass
class LMTuning:
    """The chosen pair and the whole grid."""

    best: GridPoint
    """The pair with the lowest dev WER (then CER)."""
    utterances: int
    """Dev utterances decoded."""
    skipped: int
    """Unreadable dev files left out (each reported on stderr)."""
    grid: list[GridPoint] = field(default_factory=list)
    """Every pair tried, in grid order (LM weights outer, word scores inner)."""

    lm_weight = property(lambda self: self.best.lm_weight, doc="Best LM weight.")
    word_score = property(lambda self: self.best.word_score, doc="Best word score.")
    wer = property(lambda self: self.best.wer, doc="Dev WER at the best pair.")
    cer = property(lambda self: self.best.cer, doc="Dev CER at the best pair.")

    def edges(self) -> list[str]:
        """The searched numbers whose best value is the grid's largest or smallest of several
        (a wider grid may do better there), e.g. ``["largest LM weight 4"]``."""
        found = []
        for name, value, tried in (("LM weight", self.lm_weight, [p.lm_weight for p in self.grid]),
                                   ("word score", self.word_score, [p.word_score for p in self.grid])):
            if len(set(tried)) < 3:
                continue
            if value == max(tried):
                found.append(f"largest {name} {value:g}")
            elif value == min(tried):
                found.append(f"smallest {name} {value:g}")
        return found

    def table(self) -> str:
        """The grid as a markdown table: rows are LM weights, columns word scores, cells dev WER."""
        scores = list(dict.fromkeys(p.word_score for p in self.grid))
        lines = ["| LM weight \\ word score | " + " | ".join(f"{s:g}" for s in scores) + " |",
                 "|---:|" + "---:|" * len(scores)]
        for i in range(0, len(self.grid), len(scores)):
            row = self.grid[i : i + len(scores)]
            cells = [f"**{p.wer:.3f}**" if p is self.best else f"{p.wer:.3f}" for p in row]
            lines.append(f"| {row[0].lm_weight:g} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def tune_lm(recognizer, manifest: str | Path, lm: str | Path | None, lm_weights: Sequence[float] = LM_WEIGHTS,
            word_scores: Sequence[float] | None = None, beam_size: int = 50,
            log: Callable[[str], None] | None = None, lexicon: str | Path | None = None,
            progress: bool = True) -> LMTuning:
    """Grid search of (LM weight, word score) for ``recognizer`` with ``lm`` and/or a word list ``lexicon``
    on a labeled ``manifest``; without an LM only the word score is searched (it sets how readily
    a word is emitted at all: at 0, lexicon-only search often prefers saying nothing).
    ``progress`` prints progress lines (model pass, then grid) on stderr; ``log`` gets each
    grid point's figures as soon as it is decoded."""
    if word_scores is None:
        word_scores = WORD_SCORES if lm is not None else LEXICON_WORD_SCORES
    if not lm_weights or not word_scores:
        raise UsageError("tune_lm: lm_weights and word_scores each need at least one value")
    if lm is None:
        lm_weights = (0.0,)
    from cssl.data.audio import AudioError, load_audio  # torch and torchaudio: only when tuning

    entries = read_manifest(manifest)
    if not entries.labeled:
        raise DataError(f"{manifest}: LM tuning needs transcripts for every entry")
    emissions, refs, skipped = [], [], 0
    meter = ProgressLine("lm tune: model pass", len(entries), enabled=progress)
    for done, entry in enumerate(entries, 1):
        meter.update(done - 1)
        try:
            wave = load_audio(entries.audio_path(entry), normalize=recognizer.normalize)
        except AudioError as err:
            skipped += 1
            print(f"skipped {err}", file=sys.stderr)
            continue
        emissions.append(recognizer.log_probs(wave))  # (T, V)
        refs.append(normalize_text(entry.text or ""))
    meter.update(len(entries))
    meter.close()
    if not emissions:
        raise DataError(f"{manifest}: none of its {len(entries)} utterances has readable audio to tune on")
    grid = []
    points = list(itertools.product(lm_weights, word_scores))
    meter = ProgressLine("lm tune: grid", len(points), unit="settings", enabled=progress)
    for done, (weight, score) in enumerate(points, 1):
        meter.update(done - 1)
        decoder = BeamDecoder(recognizer.vocab, lm, beam_size=beam_size, lm_weight=weight, word_score=score,
                              lexicon=lexicon)
        rates = error_rates(refs, decoder.decode_batch(emissions))
        grid.append(GridPoint(weight, score, rates.wer, rates.cer))
        if log is not None:
            log(f"lm_weight {weight:g} word_score {score:g}: dev WER {rates.wer:.4f} CER {rates.cer:.4f}")
    meter.update(len(points))
    meter.close()
    return LMTuning(min(grid, key=lambda p: (p.wer, p.cer)), len(emissions), skipped, grid)
