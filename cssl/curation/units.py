"""Choosing what to label by the sounds it holds: a concave coverage of discrete units.

Every frame of the pile gets a unit (k-means of one level's frames, the phonetic probe's units), so
each utterance becomes its count of frames per unit. The picks greedily maximise, per second of
audio,

    f(S) = sum_u p_u ** (b / 2) * sqrt(C_u(S))

where ``C_u(S)`` is the number of frames of unit ``u`` among the picks, ``p_u`` the unit's share of the
pile's frames and ``b`` the ``balance``. A unit heard many times already adds little, so every unit is
heard early; over a large budget the picked frames share out as ``p_u ** b`` (the maximiser of ``f``
for a fixed number of frames): ``b = 1`` keeps the pile's proportions, ``b = 0`` hears every unit
equally, and the default ``0.5`` flattens them (rare sounds get more than their share, common ones
less). A feature-based submodular function, as in Wei et al. (2014), "Submodular subset selection for
large-scale speech training data". ``f`` is submodular, so an utterance's gain only shrinks as the
picks grow and the greedy search is lazy: a stale gain is an upper bound, recomputed only when it
tops the queue. Speakers are capped as in :mod:`cssl.curation.selection`. Pure: arrays in, indices out.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np

from cssl.curation.selection import speaker_cap
from cssl.probe.scores import kmeans

BALANCE = 0.5
"""Picked frames share out over the units as ``p_u ** BALANCE`` (1: the pile's proportions; 0: even)."""


def unit_counts(frames: Sequence[np.ndarray], units: int, seed: int = 0) -> np.ndarray:
    """``(N, units)`` frame counts per k-means unit of each utterance's frames (each ``(T_i, D)``); the
    units are learned on every frame of the pile. Fewer frames than units is an error."""
    lengths = [len(f) for f in frames]
    ids = kmeans(np.concatenate(frames), units, seed=seed)  # (sum T_i,)
    bounds = np.cumsum([0, *lengths])
    return np.stack([np.bincount(ids[a:b], minlength=units) for a, b in itertools.pairwise(bounds)])  # (N, K)


def unit_weights(counts: np.ndarray, balance: float = BALANCE) -> np.ndarray:
    """``(K,)`` weights ``p_u ** (balance / 2)`` of the module's ``f`` (``counts``: ``(N, K)``)."""
    totals = np.asarray(counts, dtype=np.float64).sum(0)  # (K,)
    return (totals / max(totals.sum(), 1.0)) ** (balance / 2)


def unit_score(counts: np.ndarray, picked: Sequence[int], balance: float = BALANCE) -> float:
    """``f(picked) / f(everything)`` (see the module): 1.0 when every utterance is picked."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = unit_weights(counts, balance)
    whole = float(weights @ np.sqrt(counts.sum(0)))
    return float(weights @ np.sqrt(counts[list(picked)].sum(0))) / whole if len(picked) else 0.0


def select_units(counts: np.ndarray, durations: Sequence[float], budget: float,
                 speakers: Sequence[str | None] | None = None, balance: float = BALANCE) -> list[int]:
    """Utterances (rows of ``counts``, ``(N, K)`` frames per unit) within ``budget`` seconds, by lazy greedy
    maximisation of the module's ``f`` per second; deterministic (ties go to the lower index)."""
    counts = np.asarray(counts, dtype=np.float64)
    n = len(durations)
    if n == 0 or budget <= 0:
        return []
    weights = unit_weights(counts, balance)  # (K,)
    have = np.zeros(counts.shape[1])  # (K,) frames per unit among the picks
    cap = speaker_cap(speakers, max(1, round(budget / float(np.mean(durations)))))
    picked: list[int] = []
    used, per_speaker = 0.0, Counter()

    def gain(i: int) -> float:
        return float(weights @ (np.sqrt(have + counts[i]) - np.sqrt(have))) / max(durations[i], 1e-9)

    for relaxed in (False, True):  # the speaker cap gives way only when nothing else fits
        taken = set(picked)
        queue = [(-gain(i), i) for i in range(n) if i not in taken and used + durations[i] <= budget]
        heapq.heapify(queue)
        while queue:
            _, i = heapq.heappop(queue)
            speaker = speakers[i] if speakers else None
            if used + durations[i] > budget or (not relaxed and speaker is not None and per_speaker[speaker] >= cap):
                continue  # the budget only shrinks and a capped speaker stays capped in this pass
            fresh = gain(i)
            if queue and (-fresh, i) > queue[0]:  # no longer the best (ties: the lower index): back in line
                heapq.heappush(queue, (-fresh, i))
                continue
            picked.append(i)
            used += durations[i]
            have += counts[i]
            per_speaker[speaker] += 1
    return picked
