"""Scoring a recognizer on a labeled manifest: WER, CER, real-time factor, word-confidence ECE."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

from cssl.data.audio import AudioError
from cssl.data.manifest import read_manifest
from cssl.data.rejects import Rejects
from cssl.score.calibration import expected_calibration_error
from cssl.score.metrics import error_rates
from cssl.text.normalize import normalize_text
from cssl.text.vocab import transcript_notes
from cssl.utils.errors import DataError
from cssl.utils.progress import ProgressLine


@dataclass
class Evaluation:
    """Corpus figures of one decoding pass."""

    wer: float
    """Word error rate."""
    cer: float
    """Character error rate."""
    rtf: float
    """Real-time factor: decoding seconds per audio second (audio loading included)."""
    ece: float
    """Expected calibration error of word confidences against word correctness."""
    utterances: int
    """Utterances scored."""
    skipped: int
    """Utterances listed but not scored (unreadable audio, empty reference), each in ``rejects``."""
    audio_s: float
    """Audio scored, in seconds."""
    listed: int = 0
    """Utterances the manifest lists."""
    rejects: Rejects = field(default_factory=Rejects)
    """The utterances not scored, with their reasons."""
    notes: list[str] = field(default_factory=list)
    """What normalisation did to the references, and reference characters the model cannot emit."""

    @property
    def skipped_share(self) -> float:
        """Share of the listed utterances that were not scored."""
        return self.skipped / max(1, self.listed)


def word_correctness(reference: str, hypothesis: str) -> list[bool]:
    """For each hypothesis word, whether the WER alignment matches it to the same reference word."""
    words = hypothesis.split()
    if not (reference.strip() and words):
        return [False] * len(words)
    return _hits(jiwer.process_words(reference, hypothesis), len(words))


def _hits(alignment: jiwer.WordOutput, num_words: int) -> list[bool]:
    ok = [False] * num_words
    for chunk in alignment.alignments[0]:
        if chunk.type == "equal":
            for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                ok[j] = True
    return ok


def evaluate_manifest(recognizer, manifest: str | Path, out: str | Path | None = None,
                      log: Callable[[str], None] | None = None, progress: bool = True) -> Evaluation:
    """Transcribes every entry of a labeled manifest; writes per-utterance JSON lines to ``out`` as it goes.

    Unreadable files are skipped, counted and reported (``log``, default stderr); scoring
    nothing at all raises :class:`~cssl.utils.errors.DataError`. ``progress`` prints a progress
    line (rate, ETA, WER so far) on stderr.
    """
    log = log or (lambda text: print(text, file=sys.stderr))
    entries = read_manifest(manifest)
    if not entries.labeled:
        raise DataError(f"{manifest}: evaluation needs transcripts for every entry")
    texts = [e.text or "" for e in entries]
    notes = transcript_notes(texts, recognizer.vocab, "references")
    refs, hyps, confs, correct = [], [], [], []
    rejects = Rejects()
    audio_s = 0.0
    started = time.perf_counter()
    sink = open(out, "w", encoding="utf-8") if out is not None else None
    meter = ProgressLine("evaluate", len(entries), enabled=progress)
    errors = words = 0
    try:
        for done, (entry, text) in enumerate(zip(entries, texts), 1):
            if words:
                meter.update(done - 1, f"WER so far {errors / words:.3f}")
            ref = normalize_text(text)
            if not ref:
                rejects.add(entry.path, "empty reference", "the transcript has no letters or digits")
                continue
            try:
                result = recognizer.transcribe(entries.audio_path(entry))
            except AudioError as err:
                rejects.add(entry.path, err.reason, err.detail)
                log(f"skipped {err}")
                continue
            refs.append(ref)
            hyps.append(result.text)
            audio_s += result.seconds
            m = jiwer.process_words(ref, result.text)  # one alignment: errors and word hits
            errors += m.substitutions + m.deletions + m.insertions
            words += len(ref.split())
            confs += [w.confidence for w in result.words]
            n = len(result.text.split())
            correct += _hits(m, n) if n else []
            if sink is not None:
                sink.write(json.dumps({
                    "audio": entry.path, "reference": ref, "hypothesis": result.text,
                    "errors": m.substitutions + m.deletions + m.insertions,
                    "words": len(ref.split()),
                    "confidence": (sum(w.confidence for w in result.words) / len(result.words)) if result.words else 0.0,
                    "word_confidences": [round(w.confidence, 4) for w in result.words],
                }) + "\n")
                sink.flush()
    finally:
        if sink is not None:
            sink.close()
    meter.update(len(entries))
    meter.close(f"WER {errors / words:.3f}" if words else "nothing scored")
    elapsed = time.perf_counter() - started
    if not refs:
        raise DataError(f"{manifest}: none of its {len(entries)} utterances could be scored ({rejects.summary()})")
    rates = error_rates(refs, hyps)
    ece = expected_calibration_error(confs, correct) if confs else 0.0
    return Evaluation(rates.wer, rates.cer, elapsed / max(audio_s, 1e-9), ece, len(refs), len(rejects), audio_s,
                      len(entries), rejects, notes)
