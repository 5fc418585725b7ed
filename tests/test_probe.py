"""Tests of the phonetic probe: unit scores against hand-computed and limiting values, faiss
k-means on planted clusters, phone alignments (format, frame labels), and the probe end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cssl.data.alignment import (
    SILENCE,
    Segment,
    alignment_path,
    frame_labels,
    phone_name,
    read_alignments,
    segments_from_onsets,
    write_alignments,
)
from cssl.model import ModelConfig, build_pretrainer
from cssl.probe import Probe, kmeans, unit_scores
from cssl.probe.features import CODES, LOCAL, layer_name
from cssl.utils.errors import DataError

# Unit scores


def test_scores_of_a_small_table_match_the_definitions() -> None:
    phones = np.array([0, 0, 1, 1])
    units = np.array([0, 0, 0, 1])
    s = unit_scores(phones, units)
    # Unit 0 holds phones {0, 0, 1}: 2 of 4 frames are its majority; unit 1 holds {1}: 1 frame.
    assert s.phone_purity == pytest.approx(3 / 4)
    # Phone 0 is all in unit 0 (2 frames); phone 1 is split 1 / 1.
    assert s.cluster_purity == pytest.approx(3 / 4)
    h_y = math.log(2)
    h_y_given_z = 3 / 4 * -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))  # unit 1 is pure
    assert s.pnmi == pytest.approx((h_y - h_y_given_z) / h_y)
    assert (s.frames, s.units) == (4, 2)


def test_units_that_are_the_phones_score_one_and_independent_units_near_zero() -> None:
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 40, size=20000)
    perfect = unit_scores(phones, (phones * 7 + 3) % 40)  # a relabelling: same partition
    assert perfect.pnmi == pytest.approx(1.0) and perfect.phone_purity == 1.0 and perfect.cluster_purity == 1.0
    finer = unit_scores(phones, phones * 2 + rng.integers(0, 2, size=phones.size))  # each phone split in two
    assert finer.pnmi == pytest.approx(1.0) and finer.phone_purity == 1.0 and finer.cluster_purity < 0.6
    independent = unit_scores(phones, rng.integers(0, 50, size=phones.size))
    assert independent.pnmi < 0.05


def test_one_hot_phone_features_through_kmeans_score_one() -> None:
    rng = np.random.default_rng(1)
    phones = rng.integers(0, 12, size=3000)
    features = np.eye(12, dtype=np.float32)[phones] + 0.01 * rng.standard_normal((3000, 12)).astype(np.float32)
    s = unit_scores(phones, kmeans(features, 12, seed=0, redo=5))
    assert s.pnmi == pytest.approx(1.0, abs=1e-9) and s.phone_purity == 1.0 and s.cluster_purity == 1.0
    noise = rng.standard_normal((3000, 12)).astype(np.float32)
    assert unit_scores(phones, kmeans(noise, 12, seed=0)).pnmi < 0.05


def test_faiss_kmeans_recovers_planted_clusters() -> None:
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((8, 16)).astype(np.float32) * 10
    truth = rng.integers(0, 8, size=4000)
    points = centres[truth] + rng.standard_normal((4000, 16)).astype(np.float32)
    found = kmeans(points, 8, seed=0, redo=3)
    # The same partition up to a renaming: each planted cluster maps to exactly one found id and back.
    pairs = set(zip(truth.tolist(), found.tolist(), strict=True))
    assert len(pairs) == 8 and len({a for a, _ in pairs}) == 8 and len({b for _, b in pairs}) == 8


def test_kmeans_and_scores_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="at least k=5"):
        kmeans(np.zeros((3, 2), np.float32), 5)
    with pytest.raises(ValueError, match="no frames"):
        unit_scores(np.zeros(0, int), np.zeros(0, int))
    with pytest.raises(ValueError, match="equal 1-D"):
        unit_scores(np.zeros(3, int), np.zeros(4, int))


# Alignments


def test_phone_names_drop_stress_and_pauses_are_silence() -> None:
    assert [phone_name(m) for m in ("'oU", ",E", "D", "_:", "_", "a#")] == ["oU", "E", "D", SILENCE, SILENCE, "a#"]


def test_segments_cover_the_utterance_from_onsets() -> None:
    onsets = [("h", 90), ("'oU", 300), ("_:", 500), ("b", 650), ("_", 900)]
    segments = segments_from_onsets(onsets, speech=(100, 800), length=1000)
    assert segments == [
        Segment(SILENCE, 0, 100),  # before the speech: h's onset is cut to the speech start
        Segment("h", 100, 300),
        Segment("oU", 300, 500),
        Segment(SILENCE, 500, 650),
        Segment("b", 650, 800),
        Segment(SILENCE, 800, 1000),  # the pause past the speech merges with the trailing silence
    ]
    with pytest.raises(ValueError, match="not inside"):
        segments_from_onsets(onsets, speech=(100, 2000), length=1000)


def test_frame_labels_take_the_phone_at_each_frame_centre() -> None:
    segments = [Segment(SILENCE, 0, 500), Segment("a", 500, 900), Segment("b", 900, 1300)]
    # Frames of 400 samples every 320: centres 200, 520, 840, 1160 and 1480 (past the end).
    assert frame_labels(segments, 5, hop=320, field=400) == [SILENCE, "a", "a", "b", "b"]


def test_alignment_files_round_trip_and_bad_lines_are_named(tmp_path: Path) -> None:
    assert alignment_path(tmp_path / "dev.tsv") == tmp_path / "dev.phones.jsonl"
    assert alignment_path("x/train.jsonl") == Path("x/train.phones.jsonl")
    items = [("a.flac", [Segment(SILENCE, 0, 10), Segment("b", 10, 30)]), ("c.flac", [Segment("d", 0, 5)])]
    write_alignments(tmp_path / "dev.phones.jsonl", items)
    assert read_alignments(tmp_path / "dev.phones.jsonl") == dict(items)
    (tmp_path / "bad.phones.jsonl").write_text('{"path": "a", "phones": [["x", 0, 10], ["y", 12, 20]]}\n')
    with pytest.raises(DataError, match="bad.phones.jsonl, line 1: .*without gaps"):
        read_alignments(tmp_path / "bad.phones.jsonl")
    (tmp_path / "worse.phones.jsonl").write_text("not json\n")
    with pytest.raises(DataError, match="worse.phones.jsonl, line 1: not an alignment line"):
        read_alignments(tmp_path / "worse.phones.jsonl")


# The probe end to end (a small synthetic corpus with alignments)


@pytest.fixture(scope="module")
def aligned_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cssl.synth.corpus import synthesize_corpus

    out = tmp_path_factory.mktemp("aligned")
    synthesize_corpus(out, num_utterances=40, seed=3, workers=1, vocab_size=300, progress=False)
    return out


def tiny_config() -> ModelConfig:
    from cssl.utils.config import load_config, preset

    return load_config(ModelConfig, preset("model/tiny.yaml"))


def test_probe_scores_every_level_and_restores_train_mode(aligned_corpus: Path) -> None:
    torch.manual_seed(0)
    pretrainer = build_pretrainer(tiny_config())
    pretrainer.train()
    probe = Probe.from_manifest(aligned_corpus / "unlabeled.tsv", max_utterances=20)
    result = probe.run(pretrainer.model, pretrainer.quantizer, clusters=16)
    levels = [s.level for s in result.levels]
    assert levels == [LOCAL, *(layer_name(i) for i in range(1, 5)), CODES]
    assert result.utterances == 20 and result.phones > 20
    for s in result.levels:
        assert 0.0 <= s.scores.pnmi <= 1.0 and 0.0 < s.scores.phone_purity <= 1.0
        assert s.scores.frames == result.frames
    assert pretrainer.model.training and pretrainer.quantizer.training
    # Frames of one utterance: as many labels as the local tower gives frames.
    wave = probe.waves[0]
    frames = pretrainer.model.feature_extractor.output_lengths(torch.tensor([wave.numel()]))
    assert sum(int(pretrainer.model.feature_extractor.output_lengths(torch.tensor([w.numel()]))) for w in
               probe.waves) == result.frames and int(frames) > 0


def test_probe_needs_alignments(aligned_corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "x.tsv").write_text((aligned_corpus / "dev.tsv").read_text())
    with pytest.raises(DataError, match="no phone alignments"):
        Probe.from_manifest(tmp_path / "x.tsv")
    (tmp_path / "x.phones.jsonl").write_text('{"path": "elsewhere.flac", "phones": [["sil", 0, 10]]}\n')
    with pytest.raises(DataError, match="none of its"):
        Probe.from_manifest(tmp_path / "x.tsv")


def test_cli_probe_prints_the_table_and_writes_png_and_json(aligned_corpus: Path, tmp_path: Path) -> None:
    from cssl.experiments.steps import PRETRAINED

    out = subprocess.run(
        [sys.executable, "-m", "cssl", "probe", str(PRETRAINED), str(aligned_corpus / "unlabeled.tsv"),
         "--clusters", "16", "--utterances", "10", "--plot", str(tmp_path / "p.png"), "--json", str(tmp_path / "p.json"),
         "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "| layer 4 | k-means 16 |" in out.stdout and "best PNMI" in out.stdout
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "p.json").read_text())
    assert [level["level"] for level in record["levels"]][-1] == CODES and record["utterances"] == 10


def test_pretraining_validation_runs_the_probe_when_dev_has_alignments(aligned_corpus: Path, tmp_path: Path) -> None:
    from cssl.utils.config import preset

    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", str(preset("pretrain/tiny.yaml")),
         f"data.manifest={aligned_corpus / 'unlabeled.tsv'}", f"data.valid_manifest={aligned_corpus / 'dev.tsv'}",
         f"out_dir={out}", "optim.max_steps=4", "valid_every=2", "save_every=4", "probe.clusters=8", "threads=1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [2, 4]
    for r in valid:
        levels = {k: v for k, v in r.items() if k.startswith("pnmi_")}
        assert set(levels) == {"pnmi_local", *(f"pnmi_layer{i}" for i in range(1, 5)), "pnmi_codes"}
        assert r["pnmi"] == max(v for k, v in levels.items() if k != "pnmi_codes")
    assert "pnmi" in proc.stdout and (out / "pretrain_curves.png").is_file()
    # Without alignments beside the dev manifest, validation runs as before.
    (tmp_path / "dev.tsv").write_text((aligned_corpus / "dev.tsv").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain", str(preset("pretrain/tiny.yaml")),
         f"data.manifest={aligned_corpus / 'unlabeled.tsv'}", f"data.valid_manifest={tmp_path / 'dev.tsv'}",
         f"out_dir={tmp_path / 'plain'}", "optim.max_steps=2", "valid_every=2", "threads=1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    valid = [json.loads(line) for line in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert all("pnmi" not in r for r in valid) and any(r["split"] == "valid" for r in valid)
