"""Scoring a recognizer on a labeled manifest: WER, CER, real-time factor, word-confidence ECE."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jiwer

from cssl.calibration import expected_calibration_error
from cssl.data.audio import AudioError
from cssl.data.manifest import read_manifest
from cssl.metrics import error_rates
from cssl.text.normalize import normalize_text


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
    """Unreadable audio files left out (each reported on stderr)."""
    audio_s: float
    """Audio scored, in seconds."""


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


def evaluate_manifest(recognizer, manifest: str | Path, out: str | Path | None = None) -> Evaluation:
    """Transcribes every entry of a labeled manifest; writes per-utterance JSON lines to ``out``."""
    entries = read_manifest(manifest)
    if not entries.labeled:
        raise ValueError(f"{manifest}: evaluation needs transcripts for every entry")
    refs, hyps, rows, confs, correct = [], [], [], [], []
    audio_s, skipped = 0.0, 0
    started = time.perf_counter()
    for entry in entries:
        try:
            result = recognizer.transcribe(entries.audio_path(entry))
        except AudioError as err:
            skipped += 1
            print(f"skipped {err}", file=sys.stderr)
            continue
        ref = normalize_text(entry.text or "")
        refs.append(ref)
        hyps.append(result.text)
        audio_s += result.seconds
        m = jiwer.process_words(ref, result.text) if ref else None  # one alignment: errors and word hits
        confs += [w.confidence for w in result.words]
        n = len(result.text.split())
        correct += _hits(m, n) if m and n else [False] * n
        rows.append({
            "audio": entry.path, "reference": ref, "hypothesis": result.text,
            "errors": (m.substitutions + m.deletions + m.insertions) if m else 0,
            "words": len(ref.split()),
            "confidence": (sum(w.confidence for w in result.words) / len(result.words)) if result.words else 0.0,
            "word_confidences": [round(w.confidence, 4) for w in result.words],
        })
    elapsed = time.perf_counter() - started
    if out is not None:
        Path(out).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rates = error_rates(refs, hyps)
    ece = expected_calibration_error(confs, correct) if confs else 0.0
    return Evaluation(rates.wer, rates.cer, elapsed / max(audio_s, 1e-9), ece, len(rows), skipped, audio_s)
