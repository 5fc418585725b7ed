"""Choosing what to label: the picks cover the pile's clusters, keep the budget and the speakers' shares,
and beat random picks of the same budget on coverage; the command writes the manifest, report and plot."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cssl.cli import main as cssl
from cssl.curation.selection import coverage, normalise, select_covering, select_random
from cssl.curation.units import select_units, unit_counts, unit_score, unit_weights
from cssl.data.manifest import Entry, Manifest, read_manifest, write_manifest


def pile(sizes=(40, 20, 10, 5, 5), dim=16, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings in well-separated clusters of unequal sizes, and each one's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim)) * 5
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return normalise(centres[labels] + rng.normal(size=(len(labels), dim))), labels


@pytest.mark.parametrize("seed", range(5))
def test_covering_picks_every_cluster_before_a_second_of_any(seed: int) -> None:
    x, labels = pile(seed=seed)
    durations = [10.0] * len(x)
    picked = select_covering(x, durations, budget=50.0, seed=seed)
    assert len(picked) == 5 and sorted(labels[picked]) == [0, 1, 2, 3, 4]
    randoms = [coverage(x, select_random(durations, 50.0, seed)) for seed in range(20)]
    assert coverage(x, picked) > max(randoms)  # random picks land mostly in the big clusters


def test_normalising_ignores_each_dimension_scale_and_offset_and_constant_dimensions() -> None:
    x = np.random.default_rng(2).normal(size=(50, 6))
    scaled = x * np.array([1e-5, 3e-5, 1.0, 40.0, 1e-4, 2.0]) + np.array([5.0, -1.0, 0.0, 1e3, 0.3, 7.0])
    np.testing.assert_allclose(normalise(scaled), normalise(x), atol=1e-5)  # standardising undoes any affine map
    constant = normalise(np.concatenate([x, np.full((50, 1), 3.0)], axis=1))
    assert np.isfinite(constant).all() and np.all(constant[:, -1] == 0)
    np.testing.assert_allclose(np.linalg.norm(constant, axis=1), 1.0, rtol=1e-5)


def test_the_budget_holds_and_is_filled_with_utterances_that_fit() -> None:
    x, _ = pile()
    durations = list(np.random.default_rng(1).uniform(2, 20, len(x)))
    for pick in (select_covering(x, durations, 100.0, seed=3), select_random(durations, 100.0, seed=3)):
        used = sum(durations[i] for i in pick)
        assert used <= 100.0 and len(set(pick)) == len(pick)
        assert all(durations[i] > 100.0 - used for i in set(range(len(x))) - set(pick))  # nothing left fits
    assert select_covering(x, durations, 100.0, seed=3) == select_covering(x, durations, 100.0, seed=3)
    assert select_covering(x, durations, 0.0) == [] and select_random(durations, 1.0) == []


def test_no_speaker_takes_more_than_its_share_while_others_fit() -> None:
    x, labels = pile(sizes=(60, 20))
    speakers = ["big" if label == 0 else f"s{i % 4}" for i, label in enumerate(labels)]  # one speaker fills cluster 0
    picked = select_covering(x, [1.0] * len(x), budget=12.0, seed=0, speakers=speakers)
    counts = Counter(speakers[i] for i in picked)
    assert len(picked) == 12 and counts["big"] <= 5  # even share 12 / 5 speakers, times 1.5, rounded up
    alone = select_covering(x, [1.0] * len(x), budget=12.0, seed=0, speakers=["one"] * len(x))
    assert len(alone) == 12  # a single speaker: the cap gives way rather than leaving the budget unspent


def test_cssl_select_writes_the_manifest_report_and_plot(tmp_path: Path, capsys) -> None:
    from tests.conftest import tone, write
    from tests.test_recognizer import checkpoint

    ckpt = checkpoint(tmp_path)  # a small model of our format
    entries = []
    for n in range(12):
        write(tmp_path / "pile" / f"u{n}.wav", tone(1.0 + n % 3, freq=200.0 + 150 * (n % 4)))
        entries.append(Entry(f"u{n}.wav", int(16000 * (1.0 + n % 3)), speaker=f"spk{n % 3}"))
    write_manifest(Manifest(tmp_path / "pile", entries), tmp_path / "pile.jsonl")
    out = tmp_path / "label.jsonl"
    assert cssl(["select", str(tmp_path / "pile.jsonl"), str(out), "--minutes", "0.1", "--ckpt", str(ckpt)]) == 0
    chosen = read_manifest(out)
    assert 0 < sum(e.duration for e in chosen) <= 6.0 and {Path(e.path).name for e in chosen} <= {f"u{n}.wav" for n in range(12)}
    report = (tmp_path / "label.report.md").read_text()
    assert "| cover |" in report and "| random, same budget and seed |" in report
    assert (tmp_path / "label.png").stat().st_size > 0
    assert "coverage" in capsys.readouterr().out
    assert cssl(["select", str(tmp_path / "pile.jsonl"), str(out), "--minutes", "0.1", "--ckpt", str(ckpt)]) == 2
    assert cssl(["select", str(tmp_path / "pile.jsonl"), str(tmp_path / "x.jsonl"), "--minutes", "0.001",
                 "--ckpt", str(ckpt)]) == 2  # nothing that short: refused, nothing written
    assert "no utterance" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    units = tmp_path / "units.jsonl"
    assert cssl(["select", str(tmp_path / "pile.jsonl"), str(units), "--minutes", "0.1", "--ckpt", str(ckpt),
                 "--method", "units", "--units", "4"]) == 0
    assert 0 < sum(e.duration for e in read_manifest(units)) <= 6.0
    assert "| units |" in (report := (tmp_path / "units.report.md").read_text()) and "Unit coverage" in report
    assert cssl(["select", str(tmp_path / "pile.jsonl"), str(tmp_path / "b.jsonl"), "--minutes", "0.1",
                 "--method", "units", "--balance", "2"]) == 2 and "--balance" in capsys.readouterr().err


def plain_greedy(counts: np.ndarray, durations: list[float], budget: float, balance: float) -> list[int]:
    """The reference: every step recomputes every gain of f (see cssl.curation.units) per second."""
    weights, have, picked, used = unit_weights(counts, balance), np.zeros(counts.shape[1]), [], 0.0
    while True:
        fits = [i for i in range(len(durations)) if i not in picked and used + durations[i] <= budget]
        if not fits:
            return picked
        gains = [weights @ (np.sqrt(have + counts[i]) - np.sqrt(have)) / durations[i] for i in fits]
        best = fits[int(np.argmax(gains))]
        picked.append(best)
        used += durations[best]
        have += counts[best]


@pytest.mark.parametrize("seed", range(4))
def test_lazy_unit_greedy_picks_what_plain_greedy_picks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.5, 4.0, size=(60, 12)))  # (N, K) uneven, sparse-ish units
    durations = list(rng.uniform(1, 8, 60))
    for balance in (0.0, 0.5, 1.0):
        assert select_units(counts, durations, 60.0, balance=balance) == plain_greedy(counts, durations, 60.0, balance)


@pytest.mark.parametrize(("balance", "expected"), [(1.0, (12.8, 3.2, 3.2, 0.8)), (0.5, (8.9, 4.4, 4.4, 2.2)),
                                                   (0.0, (5.3, 5.3, 5.3, 4.0))])
def test_unit_picks_share_out_as_the_pile_share_to_the_balance(balance: float, expected: tuple) -> None:
    # 100 one-unit utterances of 10 frames; units hold 64 / 16 / 16 / 4 of them; 20 picks. Maximising
    # sum_u p_u^(b/2) sqrt(C_u) for a fixed total puts C_u in proportion to p_u^b (at most 4 for the last unit)
    per_unit = (64, 16, 16, 4)
    unit = np.repeat(np.arange(4), per_unit)
    counts = np.eye(4, dtype=int)[unit] * 10  # (100, 4)
    picked = select_units(counts, [1.0] * 100, 20.0, balance=balance)
    got = np.bincount(unit[picked], minlength=4)
    assert got.sum() == 20 and np.all(np.abs(got - np.array(expected)) <= 1.0), got
    randoms = [unit_score(counts, select_random([1.0] * 100, 20.0, seed), balance) for seed in range(20)]
    assert unit_score(counts, picked, balance) >= max(randoms) and unit_score(counts, range(100), balance) == 1.0


def test_unit_picks_keep_the_budget_and_the_speakers_share() -> None:
    rng = np.random.default_rng(5)
    counts = rng.poisson(3.0, size=(80, 8))
    durations = list(rng.uniform(2, 20, 80))
    picked = select_units(counts, durations, 100.0)
    used = sum(durations[i] for i in picked)
    assert used <= 100.0 and len(set(picked)) == len(picked)
    assert all(durations[i] > 100.0 - used for i in set(range(80)) - set(picked))  # nothing left fits
    speakers = ["big" if i < 60 else f"s{i % 4}" for i in range(80)]
    picked = select_units(counts, [1.0] * 80, 12.0, speakers=speakers)
    assert len(picked) == 12 and Counter(speakers[i] for i in picked)["big"] <= 4  # 1.5 x 12 / 5, rounded up
    assert len(select_units(counts, [1.0] * 80, 12.0, speakers=["one"] * 80)) == 12
    assert select_units(counts, durations, 0.0) == [] and select_units(counts, durations, 1.0) == []


def test_unit_counts_tally_each_utterance_frames_by_unit() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 10
    which = [rng.integers(0, 3, size=n) for n in (30, 50, 20)]  # each frame's true unit
    frames = [centres[w] + rng.normal(size=(len(w), 8)) * 0.1 for w in which]
    counts = unit_counts(frames, 3, seed=1)
    assert counts.shape == (3, 3) and [row.sum() for row in counts] == [30, 50, 20]
    truth = np.stack([np.bincount(w, minlength=3) for w in which])
    assert sorted(map(tuple, counts.T)) == sorted(map(tuple, truth.T))  # the same tallies, units relabelled


@pytest.mark.parametrize("minutes", ["0", "-1"])
def test_a_budget_must_be_positive(tmp_path: Path, minutes: str, capsys) -> None:
    assert cssl(["select", "pile.tsv", str(tmp_path / "o.tsv"), "--minutes", minutes]) == 2
    assert "positive budget" in capsys.readouterr().err
