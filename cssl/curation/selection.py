"""Choosing what to label: a set of utterances within a time budget that covers the unlabeled pile.

Each utterance is embedded by a pretrained model (the mean over its frames of one level's features,
each dimension standardised over the pile, unit length). faiss k-means, started from a k-center greedy
choice, puts the pile into about as many clusters as the budget holds utterances; the picks go round the clusters, largest first, each
time taking the member nearest its cluster's centre that still fits the budget, so every region of
the pile gets a label before any gets a second. With speakers known, no speaker gets more than
``SPEAKER_SHARE`` times their even share while others still fit. Random selection with the same
seed interface is the baseline. Pure: arrays in, indices out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import faiss
import numpy as np

SPEAKER_SHARE = 1.5
"""A speaker's picks are capped at this multiple of an even share (relaxed when nothing else fits)."""


def normalise(features: np.ndarray) -> np.ndarray:
    """``(N, D)`` embeddings standardised per dimension over the set, then scaled to unit length. No additive
    epsilon in the deviation: pretrained upper layers have dimensions whose deviation over a pile is 1e-5,
    which ``std + 1e-6`` would bend; a constant dimension becomes zeros."""
    x = (features - features.mean(0)) / np.maximum(features.std(0), 1e-12)
    return (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)).astype(np.float32)


def select_random(durations: Sequence[float], budget: float, seed: int = 0) -> list[int]:
    """Utterances in a seeded random order, each taken while it fits ``budget`` seconds."""
    order = np.random.default_rng(seed).permutation(len(durations))
    return _fill(order, durations, budget)


def select_covering(embeddings: np.ndarray, durations: Sequence[float], budget: float, seed: int = 0,
                    speakers: Sequence[str | None] | None = None) -> list[int]:
    """Utterances covering ``embeddings`` ``(N, D)`` (unit rows) within ``budget`` seconds (see the module)."""
    n = len(durations)
    if n == 0 or budget <= 0:
        return []
    per_pick = float(np.mean(durations))
    clusters = max(1, min(n, round(budget / per_pick)))
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    kmeans = faiss.Kmeans(x.shape[1], clusters, niter=25, seed=seed, spherical=True, min_points_per_centroid=1)
    kmeans.train(x, init_centroids=farthest_first(x, clusters, seed))
    similarity, assigned = kmeans.index.search(np.ascontiguousarray(embeddings, dtype=np.float32), 1)
    members: dict[int, list[int]] = {}
    for i in np.argsort(-similarity[:, 0], kind="stable"):  # nearest the centre first
        members.setdefault(int(assigned[i, 0]), []).append(int(i))
    queues = sorted(members.values(), key=len, reverse=True)  # largest cluster first
    cap = speaker_cap(speakers, clusters)
    picked: list[int] = []
    used, counts = 0.0, Counter()
    for relaxed in (False, True):  # the speaker cap gives way only when nothing else fits
        progress = True
        while progress:
            progress = False
            for queue in queues:
                for pos, i in enumerate(queue):
                    speaker = speakers[i] if speakers else None
                    if used + durations[i] > budget or (not relaxed and speaker is not None and counts[speaker] >= cap):
                        continue
                    picked.append(queue.pop(pos))
                    used += durations[i]
                    counts[speaker] += 1
                    progress = True
                    break
    return picked


def speaker_cap(speakers: Sequence[str | None] | None, picks: int) -> int:
    """The most utterances one speaker may give to about ``picks`` picks: ``SPEAKER_SHARE`` times an even
    share of the known speakers (no cap when none is known)."""
    known = {s for s in (speakers or []) if s is not None}
    return math.ceil(SPEAKER_SHARE * picks / len(known)) if known else len(speakers or []) + picks


def farthest_first(x: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` rows of unit ``x`` chosen by k-center greedy: a seeded first row, then each time the row
    farthest (by cosine) from every row chosen so far. k-means started there keeps small, distant
    groups that a random start can merge into their neighbours."""
    chosen = [int(np.random.default_rng(seed).integers(len(x)))]
    distance = 1.0 - x @ x[chosen[0]]
    for _ in range(count - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, 1.0 - x @ x[chosen[-1]])
    return np.ascontiguousarray(x[chosen])


def coverage(embeddings: np.ndarray, picked: Sequence[int]) -> float:
    """Mean over every utterance of its cosine to the nearest picked one (1.0: everything is picked)."""
    if not picked:
        return 0.0
    return float((embeddings @ embeddings[list(picked)].T).max(axis=1).mean())


def _fill(order: Sequence[int], durations: Sequence[float], budget: float) -> list[int]:
    picked, used = [], 0.0
    for i in order:
        if used + durations[i] <= budget:
            picked.append(int(i))
            used += durations[i]
    return picked
