"""Duplicate utterances: the same samples (exact) and the same recording changed (near).

*Exact* duplicates have the same decoded samples: a hash of the waveform at 16 kHz, quantised
to 16 bits, so a lossless re-encoding (WAV -> FLAC) of the same samples matches.

*Near* duplicates are one recording re-encoded (Opus, MP3), with its gain changed, trimmed by up
to ``max_shift`` frames at either end, or with light noise. Each utterance becomes a fingerprint:
log-mel frames (25 ms windows, 10 ms hop), each band standardised over the utterance (a gain or a
fixed channel drops out), each frame then scaled to unit length. Candidates are the nearest
neighbours of each utterance's summary (the mean standardised frame of each eighth of the utterance,
unit length) in a faiss inner-product index; a candidate is confirmed by the frame similarity: the mean cosine of aligned
frames at the best shift within ``max_shift`` frames. Two readings of different sentences, or of the
same sentence by another voice or at another pace, do not stay aligned frame by frame; a copy does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import faiss
import numpy as np
import torch
import torchaudio

from cssl import SAMPLE_RATE
from cssl.data.audio import readable_waves
from cssl.data.entries import Entry, Manifest
from cssl.data.rejects import Rejects

N_MELS = 40
HOP = SAMPLE_RATE // 100  # 10 ms frames
MAX_SHIFT = 12
"""Frames two copies may be offset by (a trim of up to 100 ms, and some slack)."""
THRESHOLD = 0.8
"""Frame similarity at or above which a pair is a near duplicate (chosen on the planted benchmark)."""
NEIGHBOURS = 10
"""Nearest neighbours per utterance checked frame by frame."""
EXACT_UP_TO = 20_000
"""Largest set searched exactly; larger ones go through an inverted-file index."""
PROBES = 16
"""Cells of the inverted-file index searched per query."""
SEGMENTS = 8
"""Equal time segments of the index key (one mean frame each)."""

_MEL = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=HOP, n_mels=N_MELS)


@dataclass(frozen=True)
class Fingerprint:
    """What duplicates are found by, for one utterance."""

    digest: str
    """Hash of the samples quantised to 16 bits: equal for equal samples."""
    frames: np.ndarray
    """``(T, N_MELS)`` standardised log-mel frames of unit length."""
    summary: np.ndarray
    """``(SEGMENTS * N_MELS / 2,)`` means of the standardised frames over equal time segments (bands pooled
    in pairs), unit length: the index key, close for copies and far for other sentences of one voice."""


def fingerprint(wave: torch.Tensor) -> Fingerprint:
    """The fingerprint of a mono 16 kHz waveform ``(T,)``."""
    pcm = torch.clamp(torch.round(wave * 32767), -32768, 32767).to(torch.int16).numpy()
    digest = hashlib.blake2b(pcm.tobytes(), digest_size=16).hexdigest()
    logmel = torch.log(_MEL(wave.float()) + 1e-6).T.numpy()  # (frames, N_MELS)
    standard = (logmel - logmel.mean(0)) / (logmel.std(0) + 1e-5)  # per band over the utterance: gain drops out
    edges = np.linspace(0, len(standard), SEGMENTS + 1).astype(int)
    parts = [standard[a:max(b, a + 1)].mean(0).reshape(N_MELS // 2, 2).mean(1) for a, b in zip(edges, edges[1:])]
    summary = np.concatenate(parts).astype(np.float32)  # (SEGMENTS * N_MELS // 2,): bands pooled in pairs
    frames = standard / (np.linalg.norm(standard, axis=1, keepdims=True) + 1e-8)
    return Fingerprint(digest, frames.astype(np.float32), summary / (np.linalg.norm(summary) + 1e-8))


def frame_similarity(a: np.ndarray, b: np.ndarray, max_shift: int = MAX_SHIFT) -> float:
    """Mean cosine of aligned frames at the best offset within ``max_shift`` frames (0 when no offset
    leaves at least half of the shorter utterance overlapping)."""
    best = 0.0
    shorter = min(len(a), len(b))
    for shift in range(-max_shift, max_shift + 1):  # b's frame t + shift against a's frame t
        start, end = max(0, -shift), min(len(a), len(b) - shift)
        if end - start < max(1, shorter // 2):
            continue
        best = max(best, float((a[start:end] * b[start + shift:end + shift]).sum(1).mean()))
    return best


def summary_neighbours(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, indices)``, each ``(len(queries), k)``: the ``k`` keys nearest each query by inner
    product (-1 where there are fewer keys). Exact up to ``EXACT_UP_TO`` keys; beyond, an inverted-file
    index (about ``4 sqrt(n)`` k-means cells, ``PROBES`` of them searched per query), whose cost grows
    as ``n^1.5`` instead of ``n^2``: a copy sits in its original's cell or a neighbouring one."""
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    dim = keys.shape[1]
    if len(keys) <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(dim)
    else:
        cells = int(4 * np.sqrt(len(keys)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
        index.train(keys[np.random.default_rng(0).permutation(len(keys))[:cells * 64]])
        index.nprobe = PROBES
    index.add(keys)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(keys)))


@dataclass(frozen=True)
class Match:
    """One utterance found to duplicate another."""

    index: int
    """The duplicate (position in the searched list)."""
    twin: int
    """What it duplicates (position in the list it was matched against)."""
    similarity: float
    """Frame similarity (1.0 for exact duplicates)."""
    kind: str
    """``exact`` or ``near``."""


def within(prints: list[Fingerprint], threshold: float = THRESHOLD, k: int = NEIGHBOURS) -> list[Match]:
    """Duplicates inside one list: every utterance that repeats an earlier one, matched to the first of
    its group (groups are closed under matching: a copy of a copy joins the original's group). Each match
    reports its similarity to that first member, the one kept (below the threshold for a copy that joined
    through another copy)."""
    parent = list(range(len(prints)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = sorted((root(i), root(j)))
        parent[b] = a

    first: dict[str, int] = {}
    for i, p in enumerate(prints):
        if p.digest in first:
            join(first[p.digest], i)
        else:
            first[p.digest] = i
    if len(prints) > 1:
        summaries = np.stack([p.summary for p in prints])
        _, neighbours = summary_neighbours(summaries, summaries, k + 1)
        pairs = sorted({(min(i, int(j)), max(i, int(j))) for i, row in enumerate(neighbours) for j in row
                        if j >= 0 and j != i})  # a pair found from either side, checked once
        for i, j in pairs:
            if root(i) != root(j):
                similarity = frame_similarity(prints[i].frames, prints[j].frames)
                if similarity >= threshold:
                    join(i, j)
    matches = []
    for i in range(len(prints)):
        r = root(i)
        if r == i:
            continue
        if prints[i].digest == prints[r].digest:
            matches.append(Match(i, r, 1.0, "exact"))
        else:
            matches.append(Match(i, r, frame_similarity(prints[i].frames, prints[r].frames), "near"))
    return matches


def against(prints: list[Fingerprint], others: list[Fingerprint], threshold: float = THRESHOLD,
            k: int = NEIGHBOURS) -> list[Match]:
    """Utterances of ``prints`` that duplicate one of ``others`` (a train set against a test set)."""
    if not prints or not others:
        return []
    digests = {p.digest: j for j, p in enumerate(others)}
    similarities, neighbours = summary_neighbours(np.stack([p.summary for p in prints]),
                                                  np.stack([p.summary for p in others]), k)
    matches = []
    for i, p in enumerate(prints):
        if p.digest in digests:
            matches.append(Match(i, digests[p.digest], 1.0, "exact"))
            continue
        scored = [(frame_similarity(p.frames, others[j].frames), int(j)) for j in neighbours[i] if j >= 0]
        similarity, j = max(scored, default=(0.0, -1))
        if similarity >= threshold:
            matches.append(Match(i, j, similarity, "near"))
    return matches


def fingerprint_manifest(manifest: Manifest, rejects: Rejects, progress: bool = True) -> tuple[list[Entry], list[Fingerprint]]:
    """Fingerprints of every readable utterance of ``manifest`` (unreadable ones go to ``rejects``)."""
    pairs = [(entry, fingerprint(wave)) for entry, wave in readable_waves(manifest, rejects, "dedup: fingerprints",
                                                                          progress=progress)]
    return [entry for entry, _ in pairs], [p for _, p in pairs]
