"""Faults and bad input: no silent wrong result, no hang, no traceback for a user's mistake.

Each test reproduces one way a user or the machine can break a run, and checks what the
suite does instead: an error naming the file or key and what to do, or a skip that is
counted and reported while the job goes on.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cssl.data.audio import AudioError
from cssl.data.dataset import DataConfig, build_loader
from cssl.data.manifest import Entry, Manifest, write_manifest
from cssl.data.scan import ScanConfig, scan_folder
from cssl.decode.recognizer import Recognizer
from cssl.score.evaluation import evaluate_manifest
from cssl.score.metrics import error_rates
from cssl.score.temperature import calibration_warnings
from cssl.text.normalize import normalization_report
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import load_checkpoint, load_latest, save_checkpoint
from cssl.train.health import Health, NonFiniteLoss, nonfinite_advice
from cssl.train.progress import Progress, read_history
from cssl.train.schedule import ScheduleConfig, schedule_warnings
from cssl.utils.config import ConfigError, load_config
from cssl.utils.errors import DataError, OutputError
from cssl.utils.io import remove_stale_temporaries
from finetune.config import FinetuneConfig
from pretrain.config import PretrainConfig
from tests.conftest import tone, write
from tests.signals import tone_corpus
from tests.test_recognizer import checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY_PRETRAIN = ROOT / "configs" / "pretrain" / "tiny.yaml"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A command of the suite in a fresh process (a hang fails the test through the timeout)."""
    return subprocess.run([sys.executable, *args], env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def labeled_manifest(folder: Path, files: dict[str, np.ndarray | bytes], text: str = "abc") -> Path:
    """Writes the files (arrays as 16 kHz wav, bytes as they are) and a labeled .tsv listing them all."""
    entries = []
    for name, data in files.items():
        path = folder / name
        if isinstance(data, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            entries.append(Entry(name, 16000, text))
        else:
            write(path, data)
            entries.append(Entry(name, len(data), text))
    manifest = folder / "set.tsv"
    write_manifest(Manifest(folder, entries), manifest)
    return manifest


# 1. Scoring nothing is an error; scoring part says how much.

def test_error_rates_of_nothing_is_an_error() -> None:
    with pytest.raises(DataError, match="nothing to score"):
        error_rates([], [])
    with pytest.raises(DataError, match="nothing to score"):
        error_rates(["", "  "], ["a", "b"])


def test_evaluate_with_every_file_rejected_fails_loudly(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    manifest = labeled_manifest(tmp_path / "data", {"a.wav": b"", "b.wav": b"RIFF garbage"})
    with pytest.raises(DataError, match="none of its 2 utterances could be scored"):
        evaluate_manifest(Recognizer.from_checkpoint(ckpt), manifest, log=lambda _: None)
    proc = run("-m", "cssl", "evaluate", str(ckpt), str(manifest))
    assert proc.returncode == 2, proc.stdout
    assert "none of its 2 utterances could be scored" in proc.stderr
    assert "Traceback" not in proc.stderr and "WER" not in proc.stdout


def test_evaluate_with_some_files_rejected_says_how_many_and_exits_non_zero(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    manifest = labeled_manifest(tmp_path / "data", {"a.wav": tone(1.0), "b.wav": tone(1.2), "c.wav": b""})
    ev = evaluate_manifest(Recognizer.from_checkpoint(ckpt), manifest, log=lambda _: None)
    assert (ev.utterances, ev.listed, ev.skipped) == (2, 3, 1)
    assert ev.rejects.counts() == {"empty file": 1}
    proc = run("-m", "cssl", "evaluate", str(ckpt), str(manifest))
    assert proc.returncode == 3
    assert "scored 2 of 3 utterances (1 skipped: 1 empty file)" in proc.stdout
    assert "more than --max-skipped" in proc.stderr
    assert run("-m", "cssl", "evaluate", str(ckpt), str(manifest), "--max-skipped", "0.5").returncode == 0


def test_finetuning_whose_dev_set_is_all_rejected_stops_with_a_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    train = labeled_manifest(data / "train", {f"{i}.wav": tone(1.0, 200 + 50 * i) for i in range(4)})
    dev = labeled_manifest(data / "dev", {"x.wav": b"", "y.wav": b"not audio"})
    proc = run("-m", "finetune", "configs/finetune/tiny.yaml", f"data.manifest={train}", f"data.valid_manifest={dev}",
               f"out_dir={tmp_path / 'run'}", "optim.max_steps=2", "valid_every=1", "data.num_workers=0",
               "mixed_precision=no", "init=null", "freeze.feature_encoder=false", "threads=1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "none of its 2 utterances could be scored" in proc.stderr and "Traceback" not in proc.stderr
    assert "best dev" not in proc.stdout  # no closing line claims a best model


# 2. Symbolic-link loops are entered once.

def test_manifest_follows_a_symlink_loop_once(tmp_path: Path) -> None:
    folder = tmp_path / "audio"
    write(folder / "talk" / "a.wav", tone(1.0))
    (folder / "talk" / "loop").mkdir()
    os.symlink("..", folder / "talk" / "loop" / "up")  # talk/loop/up -> talk
    os.symlink(folder / "talk", folder / "again")  # the same folder under a second name
    manifest, rejects = scan_folder(folder, ScanConfig(workers=1))
    assert [e.path for e in manifest] == ["again/a.wav"] or [e.path for e in manifest] == ["talk/a.wav"]
    reasons = rejects.counts()
    assert reasons["symlink loop"] >= 1 and sum(reasons.values()) >= 2, rejects.summary()


# 3. A manifest's sample counts are checked against the audio.

def test_wrong_sample_counts_are_rejected_as_length_mismatch(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    for name in ("ok", "long", "short"):
        write(folder / f"{name}.wav", tone(1.0))
    entries = [Entry("ok.wav", 16000), Entry("long.wav", 999_999), Entry("short.wav", 100)]
    write_manifest(Manifest(folder, entries), folder / "set.tsv")
    loader = build_loader(DataConfig(min_samples=0, num_workers=0), folder / "set.tsv", train=False)
    rejected, kept = [], []
    for batch in loader:
        rejected += batch.rejected
        kept += batch.indices
    assert kept == [0]
    assert sorted(Path(r.path).name for r in rejected) == ["long.wav", "short.wav"]
    assert all(r.reason == "length mismatch" and "rebuild the manifest" in r.detail for r in rejected)
    # A training loader's length filter drops the 100-sample claim; its header says otherwise: reported.
    train = build_loader(DataConfig(min_samples=8000, num_workers=0), folder / "set.tsv", train=True)
    assert train.dropped == 1 and [Path(r.path).name for r in train.rejects.items.values()] == ["short.wav"]


def test_a_scored_dev_set_is_not_length_filtered(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    write(folder / "tiny.wav", tone(0.2))
    write(folder / "long.wav", tone(2.0))
    write_manifest(Manifest(folder, [Entry("tiny.wav", 3200, "a"), Entry("long.wav", 32000, "b")]), folder / "d.tsv")
    vocab = Vocabulary.build(["a b"])
    cfg = DataConfig(min_samples=8000, max_samples=16000, num_workers=0)
    with pytest.raises(ValueError, match="no utterance passes the length filters"):
        build_loader(cfg, folder / "d.tsv", vocab, train=False)
    whole = build_loader(cfg, folder / "d.tsv", vocab, train=False, filter_lengths=False)
    assert sorted(i for b in whole for i in b.indices) == [0, 1]


# 4. Normalisation and characters outside the vocabulary are reported.

def test_normalization_report_counts_every_changed_character() -> None:
    report = normalization_report(["Café, naïve!", "l’été — 7-up"])
    assert report.dropped == {",": 1, "!": 1, "—": 1, "-": 1}
    assert report.transliterated == {"é -> E": 3, "ï -> I": 1}
    assert "',' x1" in report.summary() and "é -> E x3" in report.summary()
    assert not normalization_report(["hello world", "it's"])  # case and apostrophes are not changes


def test_characters_outside_the_vocabulary_are_counted_and_reported_when_scoring(tmp_path: Path) -> None:
    vocab = Vocabulary.build(["abc def"])
    assert vocab.unknown_characters(["abc xyz", "zz"]) == {"X": 1, "Y": 1, "Z": 3}
    ckpt = checkpoint(tmp_path)
    manifest = labeled_manifest(tmp_path / "data", {"a.wav": tone(1.0)}, text="Zap, café")
    ev = evaluate_manifest(Recognizer.from_checkpoint(ckpt), manifest)
    notes = "\n".join(ev.notes)
    assert "é -> E x1" in notes and "',' x1" in notes
    assert "'Z' x1" in notes and "'P' x1" in notes  # the checkpoint's vocabulary is A-F


def test_cli_vocab_reports_normalisation(tmp_path: Path) -> None:
    manifest = labeled_manifest(tmp_path / "data", {"a.wav": tone(1.0)}, text="Déjà vu!")
    proc = run("-m", "cssl", "data", "vocab", str(manifest), str(tmp_path / "vocab.json"))
    assert proc.returncode == 0, proc.stderr
    assert "'!' x1" in proc.stdout and "é -> E x1" in proc.stdout and "à -> A x1" in proc.stdout


# 6. An epoch without one usable utterance stops; it does not spin.

def test_pretraining_on_unusable_audio_stops_with_the_rejects_file(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    nan = tone(1.5)
    nan[10] = np.nan
    write(folder / "nan.wav", nan, subtype="FLOAT")
    entries = [Entry("nan.wav", 24000), Entry("missing1.wav", 24000), Entry("missing2.wav", 24000)]
    write_manifest(Manifest(folder, entries), folder / "train.tsv")
    out = tmp_path / "run"
    proc = run("-m", "pretrain", str(TINY_PRETRAIN), f"data.manifest={folder / 'train.tsv'}", f"out_dir={out}",
               "data.num_workers=0", "mixed_precision=no", "optim.max_steps=5", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gave no usable audio (3 skipped: 2 missing, 1 non-finite samples)" in proc.stderr
    assert str(out / "rejects.tsv") in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "rejects.tsv").read_text().count("\n") == 3


# 7. Transcription skips bad files, reports them and keeps what it did.

def test_transcribe_skips_bad_files_and_flushes_each_result(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    clips = tmp_path / "clips"
    write(clips / "a.wav", tone(1.0))
    (clips / "b.wav").write_bytes(b"RIFF not really")
    write(clips / "c.wav", np.stack([tone(1.0)] * 4, axis=1))  # 4 channels: the manifest builder rejects it too
    write(clips / "d.wav", tone(0.8))
    out = tmp_path / "out.jsonl"
    proc = run("-m", "cssl", "transcribe", str(ckpt), str(clips), "--jsonl", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [Path(json.loads(x)["audio"]).name for x in out.read_text().splitlines()] == ["a.wav", "d.wav"]
    assert "a.wav\tA" in proc.stdout and "d.wav\tA" in proc.stdout
    assert "transcribed 2 of 4 files; 2 skipped: 1 cannot decode, 1 unexpected channel count" in proc.stderr
    _, rejects = scan_folder(clips, ScanConfig(workers=1))
    assert rejects.counts() == {"cannot decode": 1, "unexpected channel count": 1}  # one policy for both


# 8. A full disk or an unwritable folder is named; the last good checkpoint stays.

def test_disk_full_during_a_checkpoint_write_keeps_the_previous_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint_1.pt"
    save_checkpoint(path, {"step": 1, "w": torch.zeros(10)})

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr("shutil.disk_usage", lambda _: type("U", (), {"free": 1000})())
    with pytest.raises(OutputError, match=r"no space left on device while writing .*checkpoint_1.pt "
                                          r"\(about 3\.8 MB needed, 0\.0 MB free\)"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1_000_000)})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_1.pt"]  # no temporary left


def test_an_out_of_space_os_error_is_named_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(OutputError, match="no space left on device while writing"):
        save_checkpoint(tmp_path / "x.pt", {"w": torch.zeros(4)})


def test_an_unwritable_out_dir_is_reported_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from pretrain.train import main

    corpus = tone_corpus(tmp_path / "tones", 4, seconds=(1.0, 1.5))

    def read_only(*args, **kwargs):  # root ignores file modes: simulate the mount
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=r"cannot write to .*run \(Read-only file system\)"):
        main(load_config(PretrainConfig, TINY_PRETRAIN, [f"data.manifest={corpus}", f"out_dir={tmp_path / 'run'}"]))


def test_stale_temporaries_are_removed_and_checkpoints_follow_the_umask(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint_5.pt.ab12_x9z.tmp").write_bytes(b"")
    (tmp_path / ".notes.txt").write_text("kept: not one of ours")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".checkpoint_5.pt.ab12_x9z.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt"]
    old = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o640


# 9. resume=auto falls back past a corrupt newest checkpoint.

def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "checkpoint_2.pt", {"step": 2})
    save_checkpoint(tmp_path / "checkpoint_4.pt", {"step": 4})
    (tmp_path / "checkpoint_6.pt").write_bytes(b"PK\x03\x04 cut off")
    path, ckpt, notes = load_latest(tmp_path)
    assert (path.name, ckpt["step"]) == ("checkpoint_4.pt", 4)
    assert len(notes) == 1 and notes[0].startswith("skipped checkpoint_6.pt")
    assert load_latest(tmp_path / "empty") is None


def test_pretraining_resume_auto_says_it_skipped_a_corrupt_checkpoint(tmp_path: Path) -> None:
    corpus = tone_corpus(tmp_path / "tones", 8, seconds=(1.0, 1.5))
    out = tmp_path / "run"
    args = ["-m", "pretrain", str(TINY_PRETRAIN), f"data.manifest={corpus}", f"out_dir={out}", "data.num_workers=0",
            "mixed_precision=no", "data.crop_samples=16000", "save_every=2", "optim.schedule.warmup_steps=1"]
    assert run(*args, "optim.max_steps=4").returncode == 0
    (out / "checkpoint_4.pt").write_bytes(b"garbage")
    proc = run(*args, "optim.max_steps=6", "resume=auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped checkpoint_4.pt" in proc.stdout and "resumed from" in proc.stdout
    assert "at step 2" in proc.stdout
    assert load_checkpoint(out / "last.pt")["step"] == 6


# 10. Out-of-range settings are named when the config loads; user errors print no traceback.

@pytest.mark.parametrize("override, key", [("model.mask.prob=1.5", "model.mask.prob"),
                                           ("optim.lr=-1e-3", "optim.lr"),
                                           ("data.num_workers=-2", "data.num_workers"),
                                           ("model.context.dropout=1.0", "model.context.dropout"),
                                           ("optim.max_steps=0", "optim.max_steps")])
def test_out_of_range_values_are_refused_with_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}' = .* is out of range"):
        load_config(PretrainConfig, TINY_PRETRAIN, [override])


def test_stage_errors_print_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run("-m", "pretrain", str(TINY_PRETRAIN), "data.manifest=/no/such/manifest.tsv", f"out_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["python -m pretrain: error: /no/such/manifest.tsv: manifest not found"]
    proc = run("-m", "pretrain", str(TINY_PRETRAIN), "data.manifest=/no/such/manifest.tsv", f"out_dir={tmp_path}",
               "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = run("-m", "finetune", "configs/finetune/tiny.yaml", "optim.lr=-1", "data.manifest=x.tsv")
    assert proc.returncode == 2 and "'optim.lr' = -1.0 is out of range; it must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_non_finite_advice_follows_the_run_settings() -> None:
    assert "enable gradient clipping" not in nonfinite_advice(1e-3, 10.0, "bf16")
    assert "enable gradient clipping" in nonfinite_advice(1e-3, 0.0, "no")
    assert "fp16" in nonfinite_advice(1e-3, 10.0, "fp16") and "0.001" in nonfinite_advice(1e-3, 10.0, "no")
    health = Health(max_nonfinite=2)
    assert health.check_loss(float("nan"), 0, "advice A") is False
    with pytest.raises(NonFiniteLoss, match="advice A"):
        health.check_loss(float("inf"), 1, "advice A")


# 11. Resume restores the history and the health monitor.

def test_resumed_progress_keeps_one_record_per_step(tmp_path: Path) -> None:
    first = Progress(tmp_path, 10, tensorboard=False)
    for step in range(1, 8):
        first.log(step, {"loss": float(step)})
    resumed = Progress(tmp_path, 10, start_step=4, tensorboard=False)  # the checkpoint was at step 4
    for step in range(5, 11):
        resumed.log(step, {"loss": float(step)})
    assert [r["step"] for r in read_history(tmp_path / "metrics.jsonl")] == list(range(1, 11))
    Progress(tmp_path, 10, tensorboard=False)  # a fresh run in the same folder starts a new history
    assert read_history(tmp_path / "metrics.jsonl") == []


def test_health_state_round_trips_its_average_and_warnings() -> None:
    health = Health()
    for step in range(300, 400, 10):
        health.check_pretraining(step, 100, 2.398, 10, 50.0, 64, 2)
    assert "chance" in health.warned
    restored = Health()
    restored.load_state_dict(health.state_dict())
    assert restored.loss_ema == health.loss_ema and restored.warned == health.warned
    assert restored.check_pretraining(400, 100, 2.398, 10, 50.0, 64, 2) == []  # not warned twice


# What a newcomer stumbled on.

def test_cssl_help_is_quick_to_load_and_plain() -> None:
    proc = run("-c", "import sys, cssl.cli; sys.exit('torch' in sys.modules)")
    assert proc.returncode == 0, "cssl --help imports torch"
    proc = run("-m", "cssl", "--help")
    assert proc.returncode == 0 and "``" not in proc.stdout and "transcribe" in proc.stdout
    assert "(default: 50)" in run("-m", "cssl", "evaluate", "--help").stdout


def test_doubtful_schedules_are_warned_about() -> None:
    assert schedule_warnings(ScheduleConfig(warmup_steps=500), total=300)
    assert schedule_warnings(ScheduleConfig(warmup_steps=100), total=1000, stop_after=50)
    assert not schedule_warnings(ScheduleConfig(warmup_steps=100), total=1000)
    from finetune.cli import warn

    cfg = load_config(FinetuneConfig, ROOT / "configs" / "finetune" / "tiny.yaml",
                      ["freeze.encoder_steps=600", "optim.max_steps=600", "data.valid_manifest=null"])
    text = " ".join(warn(cfg))
    assert "only the CTC head will ever train" in text and "best.pt will be the last model" in text


def test_a_temperature_at_the_search_bound_is_flagged() -> None:
    assert any("end of the search range" in w for w in calibration_warnings({"temperature": 8.0, "words": 500}))
    assert any("too few" in w for w in calibration_warnings({"temperature": 1.3, "words": 20}))
    assert calibration_warnings({"temperature": 1.3, "words": 500}) == []


def test_finetuning_without_dev_keeps_the_last_model_as_best(tmp_path: Path) -> None:
    from finetune.train import main

    train = labeled_manifest(tmp_path / "data", {f"{i}.wav": tone(1.0, 200 + 40 * i) for i in range(4)})
    out = tmp_path / "run"
    best = main(load_config(FinetuneConfig, ROOT / "configs" / "finetune" / "tiny.yaml",
                            [f"data.manifest={train}", f"out_dir={out}", "optim.max_steps=2", "data.num_workers=0",
                             "mixed_precision=no", "init=null", "threads=1"]))
    assert best == out / "best.pt" and load_checkpoint(best)["step"] == 2
    assert Recognizer.from_checkpoint(best).transcribe(tone(1.0)).seconds == 1.0  # the documented next step works


# Outputs: an output that is also an input is refused; an existing one is replaced only with --force, whole.

def test_evaluate_and_transcribe_refuse_to_write_over_their_inputs(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    manifest = labeled_manifest(tmp_path / "data", {"a.wav": tone(1.0)})
    listed = manifest.read_text()
    proc = run("-m", "cssl", "evaluate", str(ckpt), str(manifest), "--out", str(manifest), "--force")
    assert proc.returncode != 0 and "also an input" in proc.stderr and manifest.read_text() == listed
    clip = tmp_path / "data" / "a.wav"
    audio = clip.read_bytes()
    proc = run("-m", "cssl", "transcribe", str(ckpt), str(clip), "--jsonl", str(clip))
    assert proc.returncode != 0 and "also an input" in proc.stderr and clip.read_bytes() == audio
    report = tmp_path / "report.jsonl"
    report.write_text("kept\n")
    proc = run("-m", "cssl", "evaluate", str(ckpt), str(manifest), "--out", str(report))
    assert proc.returncode != 0 and "--force" in proc.stderr and report.read_text() == "kept\n"
    assert run("-m", "cssl", "evaluate", str(ckpt), str(manifest), "--out", str(report), "--force").returncode == 0
    assert json.loads(report.read_text().splitlines()[0])["hypothesis"] == "A"
    # the default report beside the checkpoint belongs to the command: a second evaluation replaces it
    assert run("-m", "cssl", "evaluate", str(ckpt), str(manifest)).returncode == 0
    assert run("-m", "cssl", "evaluate", str(ckpt), str(manifest)).returncode == 0


def test_convert_refuses_an_existing_output_and_replaces_a_folder_whole(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "pytorch_model.bin").write_bytes(b"old")  # the weights of another model
    proc = run("-m", "cssl", "convert", str(ckpt), str(hf), "--to", "hf")
    assert proc.returncode != 0 and "--force" in proc.stderr and "Traceback" not in proc.stderr
    assert run("-m", "cssl", "convert", str(ckpt), str(hf), "--to", "hf", "--force").returncode == 0
    assert not (hf / "pytorch_model.bin").exists() and (hf / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]  # nothing left beside
    onto_file = tmp_path / "was-a-file"
    onto_file.write_text("x")  # --to hf onto a file: refused, then replaced by the folder with --force
    assert "--force" in run("-m", "cssl", "convert", str(ckpt), str(onto_file), "--to", "hf").stderr
    assert run("-m", "cssl", "convert", str(ckpt), str(onto_file), "--to", "hf", "--force").returncode == 0
    assert (onto_file / "config.json").is_file()
    proc = run("-m", "cssl", "convert", str(ckpt), str(ckpt), "--to", "cssl", "--force")
    assert proc.returncode != 0 and "also an input" in proc.stderr
    side = tmp_path / "ta.json"
    side.write_text("{}")  # torchaudio writes NAME.pt and NAME.json: either existing is refused
    proc = run("-m", "cssl", "convert", str(ckpt), str(tmp_path / "ta.pt"), "--to", "torchaudio")
    assert proc.returncode != 0 and "ta.json" in proc.stderr


def test_shard_into_a_used_folder_needs_force_and_leaves_no_stale_shard(tmp_path: Path) -> None:
    from cssl.data.shards import read_index

    manifest = labeled_manifest(tmp_path / "data", {"a.wav": tone(1.0), "b.wav": tone(1.0)})
    out = tmp_path / "shards"
    assert run("-m", "cssl", "data", "shard", str(manifest), str(out), "--shard-hours", str(0.5 / 3600)).returncode == 0
    assert len(read_index(out).shards) == 2
    proc = run("-m", "cssl", "data", "shard", str(manifest), str(out))
    assert proc.returncode != 0 and "--force" in proc.stderr
    assert run("-m", "cssl", "data", "shard", str(manifest), str(out), "--force").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-000000.tar"]
    assert read_index(out).entries == 2


def test_a_truncated_mp3_is_skipped_by_transcription_as_by_the_manifest_builder(tmp_path: Path) -> None:
    import soundfile as sf

    ckpt = checkpoint(tmp_path)
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "whole.mp3", tone(1.0), 16000, format="MP3")
    data = (clips / "whole.mp3").read_bytes()
    (clips / "cut.mp3").write_bytes(data[: len(data) * 6 // 10])  # a cut-off download
    _, rejects = scan_folder(clips, ScanConfig(workers=1))
    assert rejects.counts() == {"truncated": 1}
    proc = run("-m", "cssl", "transcribe", str(ckpt), str(clips))
    assert proc.returncode == 0 and "transcribed 1 of 2 files; 1 skipped: 1 truncated" in proc.stderr, proc.stderr


def test_zero_validation_interval_and_empty_out_dir_are_config_errors(tmp_path: Path) -> None:
    from cssl.train.loop import open_run

    bad = tmp_path / "bad.yaml"
    bad.write_text("valid_every: 0\n")
    with pytest.raises(ConfigError, match="valid_every"):
        load_config(FinetuneConfig, bad)
    with pytest.raises(ConfigError, match="out_dir is empty"):
        open_run(PretrainConfig(out_dir=""))


def test_convert_refuses_what_would_not_load_and_names_the_difference(tmp_path: Path) -> None:
    ckpt = checkpoint(tmp_path)
    ta = tmp_path / "ta.pt"
    assert run("-m", "cssl", "convert", str(ckpt), str(ta), "--to", "torchaudio").returncode == 0
    state = torch.load(ta, weights_only=True)
    for cut, expect in (("k_proj", "lacks attention.k_proj"), ("pos_conv", "no positional convolution")):
        broken = tmp_path / f"no_{cut}.pt"
        torch.save({k: v for k, v in state.items() if cut not in k}, broken)
        (tmp_path / f"no_{cut}.json").write_text(ta.with_suffix(".json").read_text())
        out = tmp_path / f"out_{cut}.pt"
        proc = run("-m", "cssl", "convert", str(broken), str(out), "--to", "cssl")
        assert proc.returncode != 0 and expect in proc.stderr, proc.stderr
        assert "Transformer layers: set" not in proc.stderr and not out.exists()


def test_damaged_weights_and_indexes_are_one_line_errors(tmp_path: Path) -> None:
    from cssl.data.shard_loader import decode
    from cssl.data.shards import read_index

    ckpt = checkpoint(tmp_path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[:5000])  # a copy cut short
    proc = run("-m", "cssl", "convert", str(cut), str(tmp_path / "x.pt"), "--to", "cssl")
    assert proc.returncode != 0 and "cut.pt: not a readable checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    hf = tmp_path / "hf"
    assert run("-m", "cssl", "convert", str(ckpt), str(hf), "--to", "hf").returncode == 0
    weights = hf / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    proc = run("-m", "cssl", "convert", str(hf), str(tmp_path / "y.pt"), "--to", "cssl")
    assert proc.returncode != 0 and "not a readable safetensors file" in proc.stderr and "Traceback" not in proc.stderr
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "index.json").write_text(json.dumps({"format": read_index.__globals__["FORMAT"], "shards": []}))
    with pytest.raises(DataError, match="incomplete shard index"):
        read_index(shards)
    with pytest.raises(AudioError, match="cannot decode") as err:
        decode(b"RIFF not audio at all", "shard-000000.tar:u1.wav")
    assert "BytesIO" not in str(err.value)


def test_two_runs_never_write_one_folder_at_once(tmp_path: Path) -> None:
    """A run holds its out_dir (``.lock``) for its whole life; a second process wanting it stops, naming the
    first; the same process may take it again (a resumed run, in-process tests)."""
    from cssl.experiments.steps import fresh_folder
    from cssl.train.state import prepare_out_dir
    from cssl.utils.errors import OutputError
    from cssl.utils.io import release_lock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from cssl.train.state import prepare_out_dir; "
        f"prepare_out_dir(Path({str(out)!r}), True); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"out_dir {out} is in use by another process \(pid {holder.pid},"):
            prepare_out_dir(out, True)
        assert prepare_out_dir(out, False) == []  # other ranks of the same run take no lock
    finally:
        holder.kill()
        holder.wait()
    prepare_out_dir(out, True)  # free again once the holder is gone
    prepare_out_dir(out, True)  # and this process may take it twice
    release_lock(out / ".lock")
    again = subprocess.run([sys.executable, "-c", (
        f"from pathlib import Path; from cssl.train.state import prepare_out_dir; prepare_out_dir(Path({str(out)!r}), True)")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # released: another process may take it
    (out / "kept.txt").write_text("x")
    fresh_folder(out)  # a benchmark's fresh run: its own lock beside the folder, then the folder emptied
    assert not out.exists() and (tmp_path / ".run.lock").is_file()
