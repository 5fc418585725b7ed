"""How well discrete units match phones: k-means with faiss, phone purity, cluster purity and
phone-normalized mutual information (PNMI), as defined in the HuBERT paper (Hsu et al., 2021).

With y a frame's phone and z its unit, from their joint distribution over frames:

* phone purity = E_z[max_y p(y | z)]: how pure a unit is (1: every unit is one phone);
* cluster purity = E_y[max_z p(z | y)]: how concentrated a phone is (1: one unit per phone);
* PNMI = I(y; z) / H(y): the share of the phone's uncertainty a unit removes (1: the unit
  determines the phone; 0: independent).

All functions are pure: arrays in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UnitScores:
    """Agreement of units with phones over a set of frames."""

    phone_purity: float
    """E_z[max_y p(y | z)]."""
    cluster_purity: float
    """E_y[max_z p(z | y)]."""
    pnmi: float
    """I(y; z) / H(y)."""
    frames: int
    """Frames scored."""
    units: int
    """Distinct units used."""


def joint_counts(phones: np.ndarray, units: np.ndarray) -> np.ndarray:
    """(distinct phones, distinct units) counts of co-occurrence; both arrays hold integer ids per frame."""
    if phones.shape != units.shape or phones.ndim != 1:
        raise ValueError(f"phones {phones.shape} and units {units.shape} must be equal 1-D arrays")
    if phones.size == 0:
        raise ValueError("no frames to score")
    _, y = np.unique(phones, return_inverse=True)
    _, z = np.unique(units, return_inverse=True)
    counts = np.zeros((int(y.max()) + 1, int(z.max()) + 1), dtype=np.int64)
    np.add.at(counts, (y, z), 1)
    return counts


def unit_scores(phones: np.ndarray, units: np.ndarray) -> UnitScores:
    """Phone purity, cluster purity and PNMI of ``units`` (one id per frame) against ``phones``."""
    counts = joint_counts(np.asarray(phones), np.asarray(units))
    p = counts / counts.sum()  # p(y, z)
    py, pz = p.sum(axis=1), p.sum(axis=0)
    phone_purity = float(p.max(axis=0).sum())  # sum_z p(z) max_y p(y|z) = sum_z max_y p(y, z)
    cluster_purity = float(p.max(axis=1).sum())
    nz = p > 0
    mutual = float((p[nz] * np.log(p[nz] / (py[:, None] * pz[None, :])[nz])).sum())
    entropy = float(-(py * np.log(py)).sum())
    pnmi = mutual / entropy if entropy > 0 else 1.0  # one phone only: nothing to explain
    return UnitScores(phone_purity, cluster_purity, min(max(pnmi, 0.0), 1.0), int(counts.sum()), counts.shape[1])


def kmeans(features: np.ndarray, k: int, seed: int = 0, iterations: int = 20, redo: int = 1) -> np.ndarray:
    """Cluster ids (N,) of ``features`` (N, D) from faiss k-means with ``k`` centroids.

    Each of ``redo`` runs starts from k-means++ seeding (faiss alone seeds with random points,
    which splits a true cluster and merges two others far too often); the run with the
    lowest objective is kept. Fewer points than ``k`` is an error.
    """
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} points of shape (N, D), got {x.shape}")
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for run in range(redo):
        km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed + run, verbose=False,
                          max_points_per_centroid=100_000)
        km.train(x, init_centroids=_kmeans_plus_plus(x, k, rng))
        distances, ids = km.index.search(x, 1)  # (N, 1) nearest centroid
        objective = float(distances.sum())
        if best is None or objective < best[0]:
            best = (objective, ids[:, 0].astype(np.int64))
    assert best is not None
    return best[1]


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator, sample: int = 50_000) -> np.ndarray:
    """k-means++ seeding (Arthur and Vassilvitskii, 2007) on at most ``sample`` of the points: (k, D)."""
    if x.shape[0] > sample:
        x = x[rng.choice(x.shape[0], sample, replace=False)]
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(x.shape[0])]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)  # (N,) squared distance to the nearest centre so far
    for i in range(1, k):
        total = float(d2.sum())
        j = int(rng.choice(x.shape[0], p=d2 / total)) if total > 0 else int(rng.integers(x.shape[0]))
        centres[i] = x[j]
        d2 = np.minimum(d2, ((x - x[j]) ** 2).sum(axis=1))
    return centres
