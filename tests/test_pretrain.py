"""Pretraining stage: exact resume, multi-process equivalence, bad files, learning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cssl.data.manifest import Entry, Manifest
from cssl.train.checkpoint import load_checkpoint
from cssl.utils.config import load_config
from pretrain.config import PretrainConfig
from pretrain.train import main
from tests.signals import tone_corpus

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
FAST = ["mixed_precision=no", "data.num_workers=0", "log_every=1", "data.max_batch_samples=64000", "data.crop_samples=16000",
        "optim.schedule.warmup_steps=2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tones")
    tone_corpus(folder, 24, seconds=(1.0, 2.0), seed=0)
    return folder / "train.tsv"


def losses(out_dir: Path) -> list[float]:
    rows = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def test_resume_continues_step_for_step(corpus: Path, tmp_path: Path) -> None:
    # One thread: with several, MKL may change its thread count under load, and so the summation
    # order of a GEMM; the resume itself is exact (RNG, data position, optimizer), as compared here bit for bit.
    common = [f"data.manifest={corpus}", *FAST, "optim.max_steps=6", "threads=1"]
    full = tmp_path / "full"
    main(load_config(PretrainConfig, TINY, [*common, f"out_dir={full}", "save_every=100"]))
    part = tmp_path / "part"
    main(load_config(PretrainConfig, TINY, [*common, f"out_dir={part}", "save_every=3", "max_minutes=1e-9"]))
    assert load_checkpoint(part / "last.pt")["step"] == 1  # stopped early by the wall-clock limit
    main(load_config(PretrainConfig, TINY, [*common, f"out_dir={part}", "save_every=3", "resume=auto"]))
    assert losses(part) == losses(full)  # dropout, masks, Gumbel noise and data order all resumed
    a, b = load_checkpoint(full / "last.pt")["model"], load_checkpoint(part / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_files_are_skipped_and_reported(corpus: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(corpus.parent, folder)
    lines = (folder / "train.tsv").read_text().splitlines()
    lines[0] = str(folder)
    (folder / "audio" / "broken.flac").write_bytes(b"fLaC garbage")
    lines.append("audio/broken.flac\t20000")
    lines.append("audio/missing.flac\t20000")
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    main(load_config(PretrainConfig, TINY, [f"data.manifest={folder / 'train.tsv'}", *FAST, "optim.max_steps=8",
                                            f"out_dir={out}"]))
    rejects = (out / "rejects.tsv").read_text()
    assert "broken.flac\tcannot decode" in rejects and "missing.flac\tmissing" in rejects


@pytest.mark.parametrize("processes", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_several_processes_match_one_with_the_same_global_batch(corpus: Path, tmp_path: Path, processes: int) -> None:
    """The same config (N batches per update) on one process (``python -m pretrain``) and on N under
    ``accelerate launch -m cssl pretrain``: one process accumulates all N batches, each of N processes takes one."""
    common = [f"data.manifest={corpus}", "data.num_workers=0", "data.max_batch_size=2", "data.bucket=false",
              "data.crop_samples=16000", "data.min_samples=16000", "optim.max_steps=3", "save_every=3",
              "model.context.dropout=0.0", "model.context.attention_dropout=0.0", "model.context.dropout_input=0.0",
              "model.dropout_features=0.0", "threads=1", "log_every=1", "mixed_precision=no",
              f"optim.accumulation={processes}", f"data.valid_manifest={corpus}", "valid_every=3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "pretrain", str(TINY), *common, f"out_dir={one}"],
                   check=True, env=env, cwd=ROOT, capture_output=True)
    # On a CPU-only machine "--multi_gpu" starts the processes with torchrun and they meet over gloo.
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "cssl", "pretrain", str(TINY), *common, f"out_dir={two}"],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "grad strides do not match" not in proc.stderr  # DDP's bucket views fit every gradient
    # Same data, masks and parameters at every step: the global losses agree to float precision.
    assert losses(one) == pytest.approx(losses(two), rel=1e-5)
    # Validation figures are global: each process scores its share, the totals are summed over processes
    # (code perplexity is a mean over batches: divided by every process's batches, not this one's).
    valid = [[json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in x][-1]
             for run in (one, two)]
    assert valid[1]["accuracy"] == pytest.approx(valid[0]["accuracy"], abs=0.05)
    assert valid[1]["code_ppl"] == pytest.approx(valid[0]["code_ppl"], rel=0.25)
    a, b = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert a["step"] == b["step"] == 3
    # Adam turns float noise in near-zero gradients into steps of up to lr (1e-3): allow a few 1e-4.
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], atol=3e-4, rtol=1e-4), key


@pytest.mark.slow
def test_learns_tone_sequences_well_above_chance(tmp_path: Path) -> None:
    """A short run on learnable audio leaves chance: loss falls and accuracy rises."""
    folder = tmp_path / "tones"
    tone_corpus(folder, 120, seconds=(2.0, 3.0), seed=0)
    out = tmp_path / "run"
    main(load_config(PretrainConfig, TINY, [f"data.manifest={folder / 'train.tsv'}", "data.num_workers=0",
                                            "optim.max_steps=220", "optim.schedule.kind=constant",
                                            "mixed_precision=no", "log_every=20", "save_every=1000",
                                            f"out_dir={out}"]))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    late = rows[-3:]  # the last 60 updates: single batches are noisy
    loss = sum(r["contrastive"] for r in late) / len(late)
    accuracy = sum(r["accuracy"] for r in late) / len(late)
    assert loss < rows[0]["contrastive"] - 0.3, rows
    assert accuracy > 3 * rows[0]["chance"], rows


def test_continued_pretraining_starts_from_a_release_with_a_fresh_optimizer(corpus: Path, tmp_path: Path) -> None:
    from cssl.train.checkpoint import CheckpointError
    from pretrain.release import release

    first = tmp_path / "first"
    main(load_config(PretrainConfig, TINY, [f"data.manifest={corpus}", *FAST, "optim.max_steps=3", f"out_dir={first}"]))
    slim = release(first / "last.pt", tmp_path / "release.pt")  # weights only, float16
    again = tmp_path / "again"
    # a different architecture asked for: init's own wins, as its weights need it
    main(load_config(PretrainConfig, TINY, [f"data.manifest={corpus}", *FAST, "optim.max_steps=1", "optim.lr=1e-12",
                                            f"init={tmp_path / 'release.pt'}", "model.quantizer.entries=16",
                                            "model.quantizer.temperature=[0.5,0.5,0.999]", f"out_dir={again}"]))
    ckpt = load_checkpoint(again / "last.pt")
    assert ckpt["step"] == 1 and ckpt["config"]["model"]["quantizer"]["entries"] == 32
    # ...while the Gumbel temperature is a schedule, this run's: a continued run need not restart it hot
    assert list(ckpt["config"]["model"]["quantizer"]["temperature"]) == [0.5, 0.5, 0.999]
    for key, value in slim["model"].items():  # quantizer and projections too; an lr of 1e-12 moves nothing
        assert torch.allclose(ckpt["model"][key], value.float(), atol=1e-6), key
    assert all(s["step"] == 1 for s in ckpt["optimizer"]["state"].values())  # a fresh optimizer
    with pytest.raises(CheckpointError, match="weights only .* init="):
        main(load_config(PretrainConfig, TINY, [f"data.manifest={corpus}", *FAST, "optim.max_steps=2",
                                                f"resume={tmp_path / 'release.pt'}", f"out_dir={tmp_path / 'x'}"]))


def test_stuck_at_chance_counts_cross_distractors_among_the_negatives() -> None:
    import math

    from cssl.train.health import Health
    from pretrain.train import Pretraining

    cfg = PretrainConfig()
    cfg.loss.num_distractors, cfg.loss.cross_distractors = 10, 10
    cfg.optim.schedule.warmup_steps = 10
    stage = Pretraining(cfg, accel=None, valid=None, health=Health())
    chance = math.log(10 + 10 + 1)  # 21 candidates: the loss of a context that cannot tell them apart
    totals = {"loss": chance, "contrastive": chance, "diversity": 0.0, "penalty": 0.0, "count": 1.0, "correct": 0.0,
              "code_ppl": 50.0, "prob_ppl": 50.0, "audio_s": 1.0}
    warnings = [w for step in range(20, 30) for w in stage.log(step, totals, 1e-3, 1.0)[1]]
    assert any("chance" in w for w in warnings), warnings
    # at log(11), the chance of in-utterance distractors alone, 21 candidates are being told apart: no warning
    fresh = Pretraining(cfg, accel=None, valid=None, health=Health())
    below = {**totals, "loss": math.log(11), "contrastive": math.log(11)}
    assert not [w for step in range(20, 30) for w in fresh.log(step, below, 1e-3, 1.0)[1] if "chance" in w]


def test_several_processes_write_one_rejects_file_with_every_rank_s_skips(corpus: Path, tmp_path: Path) -> None:
    from cssl.data.manifest import read_manifest, write_manifest

    manifest = read_manifest(corpus)
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad0.wav").write_bytes(b"RIFF not audio")
    (data / "bad1.wav").write_bytes(b"")
    entries = [Entry(str(data / "bad0.wav"), 16000), Entry(str(data / "bad1.wav"), 16000)]
    entries += [Entry(str(manifest.audio_path(e)), e.num_samples) for e in list(manifest)[:6]]
    listing = tmp_path / "with-bad.tsv"
    write_manifest(Manifest(Path("/"), entries), listing)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "pretrain", str(TINY), f"data.manifest={listing}", "data.num_workers=0",
                           "data.max_batch_size=1", "data.bucket=false", "data.crop_samples=16000",
                           "data.min_samples=8000", "optim.max_steps=6", "optim.accumulation=2", "optim.schedule.warmup_steps=2",
                           "save_every=6", "threads=1",
                           "mixed_precision=no", f"out_dir={out}"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (out / "rejects.tsv").read_text().splitlines()
    assert sorted(Path(r.split("\t")[0]).name for r in rows) == ["bad0.wav", "bad1.wav"]  # rank 0's and rank 1's
    assert "2 skipped" in proc.stdout + proc.stderr
