"""Phone alignments of real speech by synthesis: speak the transcript with eSpeak NG, align by DTW.

eSpeak NG knows where each phone of its own speech starts. For a recording and its transcript, the
transcript is spoken at the speaking rate that gives the recording's duration, both signals become
MFCC frames (10 ms hop, per-utterance mean and variance normalised), and dynamic time warping maps
every synthetic frame onto a recorded one; each phone onset follows its frame. Leading and trailing
silence of the recording are found by energy and labelled ``sil``.

No acoustic model is needed, so the probe can run on any labeled English speech. The alignment is
coarse: measured against eSpeak NG's own alignments of another voice, and on real speech only as
good as eSpeak's pronunciation and MFCC distances allow (docs/real-speech-pretraining.md gives the figures).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from cssl.data.alignment import SILENCE, Segment, frame_labels, segments_from_onsets
from cssl.data.audio import SAMPLE_RATE, resample
from cssl.synth.espeak import MAX_RATE, MIN_RATE, Espeak
from cssl.utils.errors import DataError

HOP = 160
"""MFCC hop in samples at 16 kHz (10 ms)."""
BASE_RATE = 175
"""eSpeak NG speaking rate (words per minute) of the first, duration-measuring pass."""


@dataclass(frozen=True)
class AlignConfig:
    """How transcripts are spoken and aligned."""

    voice: str = "en-us"
    """eSpeak NG voice that speaks the transcripts (its pronunciation decides the phones)."""
    silence_db: float = -35.0
    """Frames this far below the recording's loudest 10 ms frame count as leading/trailing silence..."""
    floor_db: float = 6.0
    """...and so do frames less than this far above the noise floor (the 10th percentile of frame energies)."""
    margin: float = 0.03
    """Seconds of the recording kept around its loud part (breath and onsets)."""


def mfcc_frames(wave: np.ndarray) -> np.ndarray:
    """(T, 13) MFCC frames of 16 kHz audio (25 ms windows, 10 ms hop) with their deltas: (T, 26),
    each dimension normalised to zero mean and unit variance over the utterance."""
    transform = _mfcc()
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    feats = transform(x).T  # (n_mfcc, T) -> (T, n_mfcc)
    deltas = torchaudio.functional.compute_deltas(feats.T.unsqueeze(0)).squeeze(0).T  # (T, n_mfcc)
    both = torch.cat([feats, deltas], dim=1).numpy().astype(np.float64)  # (T, 2 n_mfcc)
    return (both - both.mean(0)) / (both.std(0) + 1e-5)


_MFCC: torchaudio.transforms.MFCC | None = None


def _mfcc() -> torchaudio.transforms.MFCC:
    global _MFCC
    if _MFCC is None:
        _MFCC = torchaudio.transforms.MFCC(SAMPLE_RATE, n_mfcc=13, melkwargs={
            "n_fft": 400, "win_length": 400, "hop_length": HOP, "n_mels": 40, "center": True})
    return _MFCC


def dtw_path(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The lowest-cost monotone path between frame sequences ``a`` (N, D) and ``b`` (M, D) under Euclidean
    frame distances, steps (1, 0), (0, 1), (1, 1); returns (L, 2) index pairs from (0, 0) to (N-1, M-1).

    The cost is filled one anti-diagonal at a time (cells on diagonal k need only diagonals k-1 and k-2),
    so each step is one vectorised operation."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError("dtw_path: both sequences need at least one frame")
    cost = np.sqrt(np.maximum(((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T), 0.0))  # (N, M)
    total = np.full((n, m), np.inf)
    for k in range(n + m - 1):
        i = np.arange(max(0, k - m + 1), min(n, k + 1))  # cells (i, k - i) of diagonal k
        j = k - i
        if k == 0:
            total[0, 0] = cost[0, 0]
            continue
        best = np.full(i.shape, np.inf)
        up = i > 0
        best[up] = total[i[up] - 1, j[up]]
        left = j > 0
        best[left] = np.minimum(best[left], total[i[left], j[left] - 1])
        both = up & left
        best[both] = np.minimum(best[both], total[i[both] - 1, j[both] - 1])
        total[i, j] = cost[i, j] + best
    path = [(n - 1, m - 1)]
    i, j = n - 1, m - 1
    while i > 0 or j > 0:
        steps = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((s for s in steps if s[0] >= 0 and s[1] >= 0), key=lambda s: total[s])
        path.append((i, j))
    return np.array(path[::-1])


def speech_bounds(wave: np.ndarray, cfg: AlignConfig = AlignConfig()) -> tuple[int, int]:
    """``(first, last)`` samples of the recording without its leading and trailing silence (10 ms frame
    energies against the loudest and against the noise floor), with ``cfg.margin`` kept on each side."""
    frames = len(wave) // HOP
    if frames == 0:
        return 0, len(wave)
    energy = (wave[: frames * HOP].reshape(frames, HOP).astype(np.float64) ** 2).mean(1)  # (T,)
    db = 10 * np.log10(energy + 1e-12)
    threshold = max(db.max() + cfg.silence_db, min(np.percentile(db, 10) + cfg.floor_db, db.max() - 6))
    loud = np.flatnonzero(db > threshold)
    margin = round(cfg.margin * SAMPLE_RATE)
    return max(0, int(loud[0]) * HOP - margin), min(len(wave), (int(loud[-1]) + 1) * HOP + margin)


def spoken(espeak: Espeak, text: str, duration: float, cfg: AlignConfig) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """``text`` spoken by ``cfg.voice`` at the rate that lasts about ``duration`` seconds, trimmed by
    :func:`speech_bounds`: its 16 kHz samples and phone onsets in them."""
    rate = BASE_RATE
    for _ in range(2):  # the second pass corrects the rate from the first one's duration
        speech = espeak.speak(text.lower(), cfg.voice, rate=rate, seed=0)
        wave = resample(torch.from_numpy(speech.samples), speech.sample_rate, SAMPLE_RATE).numpy()
        first, last = speech_bounds(wave, cfg)
        took = max(last - first, HOP) / SAMPLE_RATE
        wanted = int(round(min(MAX_RATE, max(MIN_RATE, rate * took / max(duration, 1e-3)))))
        if wanted == rate:
            break
        rate = wanted
    onsets = [(name, round(sample * SAMPLE_RATE / speech.sample_rate) - first) for name, sample in speech.phonemes]
    return wave[first:last], onsets


def align(wave: np.ndarray, text: str, espeak: Espeak, cfg: AlignConfig = AlignConfig()) -> list[Segment]:
    """Phone segments covering a 16 kHz recording of ``text`` (see the module's description)."""
    first, last = speech_bounds(wave, cfg)
    if not text.strip() or last - first < 2 * HOP:
        return [Segment(SILENCE, 0, len(wave))] if len(wave) else []
    synthetic, onsets = spoken(espeak, text, (last - first) / SAMPLE_RATE, cfg)
    ours, theirs = mfcc_frames(wave[first:last]), mfcc_frames(synthetic)
    path = dtw_path(theirs, ours)  # (L, 2): (synthetic frame, recorded frame)
    first_match = np.full(len(theirs), -1)
    for s, r in path[::-1]:
        first_match[s] = r  # walking back, the earliest recorded frame of each synthetic frame wins
    mapped = [(name, first + int(first_match[min(len(theirs) - 1, max(0, sample // HOP))]) * HOP)
              for name, sample in onsets]
    return segments_from_onsets(mapped, (first, last), len(wave))


def frame_agreement(ours: Sequence[Segment], truth: Sequence[Segment], hop: int = HOP) -> float:
    """Share of ``hop``-spaced sample positions where two alignments of one utterance name the same phone."""
    length = min(ours[-1].end, truth[-1].end)
    frames = length // hop
    a, b = frame_labels(ours, frames, hop, hop), frame_labels(truth, frames, hop, hop)
    return sum(x == y for x, y in zip(a, b)) / max(frames, 1)


def boundary_errors(ours: Sequence[Segment], truth: Sequence[Segment]) -> list[int]:
    """Absolute differences in samples between the phone onsets of two alignments of the same phone
    sequence (silence left out), paired in order; empty when the sequences differ."""
    a, b = [s for s in ours if s.phone != SILENCE], [s for s in truth if s.phone != SILENCE]
    if [s.phone for s in a] != [s.phone for s in b]:
        return []
    return [abs(x.start - y.start) for x, y in zip(a, b)]


@dataclass
class AlignReport:
    """What :func:`align_manifest` wrote and skipped."""

    aligned: int
    """Utterances aligned."""
    skipped: dict[str, str]
    """Manifest paths left out, with the reason (no transcript, audio that does not decode)."""
    seconds: float
    """Wall time."""


def align_manifest(manifest: str | Path, out: str | Path | None = None, cfg: AlignConfig = AlignConfig(),
                   max_utterances: int | None = None, progress: Callable[[int, int], None] | None = None
                   ) -> AlignReport:
    """Aligns every transcribed entry of ``manifest`` (at most ``max_utterances``) and writes the alignment
    file (``out``, by default ``NAME.phones.jsonl`` beside the manifest); an entry without a transcript or
    whose audio does not decode is skipped and reported, never fatal."""
    import time

    from cssl.data.alignment import alignment_path, write_alignments
    from cssl.data.audio import AudioError, load_audio
    from cssl.data.manifest import read_manifest

    start = time.monotonic()
    data = read_manifest(manifest)
    if not data.labeled:
        raise DataError(f"{manifest}: no transcripts; alignments by synthesis need the text of each utterance "
                        "(a .wrd beside a .tsv, or 'text' in a .jsonl)")
    espeak = Espeak()
    entries = list(data)[:max_utterances] if max_utterances is not None else list(data)
    items, skipped = [], {}
    for i, entry in enumerate(entries):
        if not (entry.text or "").strip():
            skipped[entry.path] = "no transcript"
        else:
            try:
                wave = load_audio(data.audio_path(entry)).numpy()
                items.append((entry.path, align(wave, entry.text, espeak, cfg)))  # type: ignore[arg-type]
            except AudioError as err:
                skipped[entry.path] = str(err)
        if progress is not None:
            progress(i + 1, len(entries))
    if not items:
        raise DataError(f"{manifest}: no utterance could be aligned ({len(skipped)} skipped; first: "
                        f"{next(iter(skipped.items()), ('', ''))})")
    write_alignments(out if out is not None else alignment_path(manifest), items)
    return AlignReport(len(items), skipped, time.monotonic() - start)
