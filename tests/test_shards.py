"""Sharded corpora: WebDataset layout, streaming without overlap, exact resume across world sizes."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from cssl.data.manifest import Entry, Manifest
from cssl.data.shard_loader import EpochProgress, ShardStream, StreamBatch, StreamConfig, decode, plan
from cssl.data.shards import read_index, write_shards
from cssl.utils.errors import DataError
from tests.conftest import tone, write

COUNT = 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    entries = []
    for i in range(COUNT):
        seconds = float(rng.uniform(0.5, 3.0))
        ext = ".flac" if i % 2 else ".wav"
        write(root / f"u{i:03d}{ext}", tone(seconds, 200 + 10 * i))
        entries.append(Entry(f"u{i:03d}{ext}", int(round(seconds * 16000)), text=f"WORD {i}", speaker=f"s{i % 5}"))
    manifest = Manifest(root, entries)
    index = write_shards(manifest, root / "shards", shard_hours=8 / 3600)  # about 8 s per shard
    return manifest, index.root


def consume(stream: ShardStream, batches: int | None = None) -> tuple[list[tuple[str, int]], list[StreamBatch]]:
    items, seen = [], []
    for i, batch in enumerate(stream):
        if batches is not None and i >= batches:
            break
        items += batch.items
        seen.append(batch)
    return items, seen


def test_shards_hold_the_source_bytes_in_webdataset_layout(corpus) -> None:
    manifest, root = corpus
    index = read_index(root)
    assert index.entries == COUNT and index.labeled and len(index.shards) > 5
    assert abs(index.hours * 3600 - sum(e.duration for e in manifest)) < 0.01
    with tarfile.open(index.path(index.shards[0])) as tar:
        names = tar.getnames()
        first = json.loads(tar.extractfile(names[1]).read())
        audio = tar.extractfile(names[0]).read()
    assert names[0].split(".")[0] == names[1].split(".")[0] and names[1].endswith(".json")  # KEY.ext, KEY.json
    entry = manifest[0]
    assert first == {"text": entry.text, "speaker": entry.speaker, "num_samples": entry.num_samples, "source": entry.path}
    assert audio == manifest.audio_path(entry).read_bytes()  # kept as it was (FLAC stays FLAC)
    flac = next(e for e in manifest if e.path.endswith(".flac"))
    assert decode(manifest.audio_path(flac).read_bytes(), flac.path).numel() == flac.num_samples


def test_four_readers_see_every_utterance_once_with_little_padding(corpus) -> None:
    _, root = corpus
    index = read_index(root)
    cfg = StreamConfig(max_batch_samples=120_000, shuffle_buffer=8, window=30, seed=1)
    items = []
    for rank in range(4):
        got, batches = consume(ShardStream(index, cfg, epoch=0, rank=rank, world=4))
        items += got
        assert all(b.waves.numel() <= cfg.max_batch_samples for b in batches)
    assert len(items) == COUNT and len(set(items)) == COUNT
    _, batches = consume(ShardStream(index, StreamConfig(max_batch_samples=120_000, shuffle_buffer=8, window=60)))
    padded, real = sum(b.waves.numel() for b in batches), sum(int(b.lengths.sum()) for b in batches)
    assert padded / real - 1 < 0.10  # length bucketing inside the window
    shards = [{s.name for s in plan(index, 0, 1, r, 4)} for r in range(4)]
    assert sum(len(s) for s in shards) == len(index.shards) and not set.intersection(*shards)
    assert plan(index, 1, 1, 0, 4) != plan(index, 0, 1, 0, 4)  # each epoch its own order


def test_killed_with_four_readers_and_resumed_with_two_sees_each_once(corpus) -> None:
    _, root = corpus
    index = read_index(root)
    cfg = StreamConfig(max_batch_samples=80_000, shuffle_buffer=6, window=8, seed=2)
    progress, first = EpochProgress(3), []
    for rank in range(4):  # each rank used a few batches, then the job died; ranks' progress merged
        mine = EpochProgress(3)
        got, _ = consume(ShardStream(index, cfg, epoch=3, rank=rank, world=4), batches=2)
        mine.mark(got)
        first += got
        progress = progress.merge(mine)
    saved = json.loads(json.dumps(progress.state_dict()))  # through a checkpoint
    resumed = EpochProgress.from_state(saved)
    assert resumed.used == progress.used and 0 < len(first) < COUNT
    second = []
    for rank in range(2):
        got, _ = consume(ShardStream(index, cfg, epoch=3, rank=rank, world=2, progress=resumed))
        second += got
    counts = Counter(first + second)
    assert len(counts) == COUNT and set(counts.values()) == {1}


def test_dataloader_workers_split_a_ranks_shards_without_overlap(corpus) -> None:
    _, root = corpus
    cfg = StreamConfig(max_batch_samples=100_000, shuffle_buffer=4, window=8)
    items = []
    for rank in range(2):  # 2 ranks x 2 workers: 4 readers
        stream = ShardStream(read_index(root), cfg, rank=rank, world=2)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2, collate_fn=lambda b: b)
        items += [item for batch in loader for item in batch.items]
    counts = Counter(items)
    assert len(counts) == COUNT and set(counts.values()) == {1}


def test_a_corrupt_shard_is_skipped_and_named_a_missing_one_stops_before_start(corpus, tmp_path: Path) -> None:
    import shutil

    _, root = corpus
    copy = tmp_path / "shards"
    shutil.copytree(root, copy)
    index = read_index(copy)
    victim = index.path(index.shards[2])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # cut off mid-write
    bad, items = [], []
    for batch in ShardStream(index, StreamConfig(max_batch_samples=200_000, shuffle_buffer=2, window=4)):
        bad += batch.bad
        items += batch.items
    assert COUNT - index.shards[2].entries <= len(items) < COUNT  # the rest went on
    # each lost utterance is counted, named by the shard and its position there
    assert {name.split("#")[0] for name, _ in bad} == {victim.name} and len(items) + len(bad) == COUNT
    victim.unlink()
    with pytest.raises(DataError, match=r"1 of \d+ shards are missing \(first: shard-000002.tar\)"):
        ShardStream(read_index(copy), StreamConfig())


def test_progress_state_is_ranges() -> None:
    p = EpochProgress(2)
    p.mark([("a", i) for i in (0, 1, 2, 5, 7, 8)])
    assert p.state_dict() == {"epoch": 2, "used": {"a": [[0, 3], [5, 6], [7, 9]]}}
    assert EpochProgress.from_state(p.state_dict()).used == p.used
    with pytest.raises(ValueError, match="epochs 2 and 3"):
        p.merge(EpochProgress(3))


def test_pretraining_streams_shards_and_resumes_where_it_stopped(corpus, tmp_path: Path) -> None:
    from cssl.train.checkpoint import load_checkpoint
    from cssl.utils.config import load_config, preset
    from pretrain.config import PretrainConfig
    from pretrain.train import main

    _, root = corpus
    args = [f"data.manifest={root}", "mixed_precision=no", "data.num_workers=0", "log_every=1",
            "data.max_batch_samples=64000", "data.crop_samples=16000", "optim.schedule.warmup_steps=2",
            "loss.num_distractors=5", "save_every=3", "valid_every=100"]
    full, part = tmp_path / "full", tmp_path / "part"
    main(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [*args, "optim.max_steps=6", f"out_dir={full}"]))
    main(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [*args, "optim.max_steps=6", "stop_after=3", f"out_dir={part}"]))
    main(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [*args, "optim.max_steps=6", f"out_dir={part}",
                                                                   "resume=auto"]))
    a3, b3 = load_checkpoint(full / "checkpoint_3.pt"), load_checkpoint(part / "checkpoint_3.pt")
    assert a3["stream"] == b3["stream"]  # the same utterances in the first updates: the stream is seeded
    assert all(torch.equal(v, b3["model"][k]) for k, v in a3["model"].items())

    def used(ckpt) -> set[tuple[str, int]]:
        return {(shard, p) for shard, ranges in ckpt["stream"]["progress"]["0"]["used"].items()
                for start, end in ranges for p in range(start, end)}

    before, after = used(b3), used(load_checkpoint(part / "last.pt"))
    assert before < after and len(after) <= COUNT  # resumed: went on with utterances not used before the kill


@pytest.mark.slow
def test_four_processes_over_shards_then_two_use_each_utterance_once(corpus, tmp_path: Path) -> None:
    """accelerate launch (gloo on CPU): 4 processes stop after 2 updates, 2 processes resume the epoch."""
    import os
    import subprocess
    import sys

    from cssl.train.checkpoint import load_checkpoint
    from cssl.utils.config import preset

    _, root = corpus
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    args = [f"data.manifest={root}", "mixed_precision=no", "data.num_workers=0", "data.max_batch_samples=64000",
            "data.crop_samples=16000", "optim.accumulation=4", "optim.max_steps=40", "loss.num_distractors=5",
            "save_every=1", "valid_every=1000", "threads=1", f"out_dir={tmp_path / 'run'}", "resume=auto"]

    def launch(processes: int, stop_after: int) -> None:
        proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                               str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
                               "no", "-m", "pretrain", str(preset("pretrain/tiny.yaml")), *args,
                               f"stop_after={stop_after}"], env=env, cwd=repo, capture_output=True, text=True)
        # The launcher's own traceback fills the tail: keep the workers' first error lines and the
        # Python stacks faulthandler prints when a worker aborts.
        lines = proc.stderr.splitlines()
        fatal = next((i for i, line in enumerate(lines) if "Fatal Python error" in line), len(lines))
        cause = [line for line in lines[:fatal]
                 if re.search(r"terminate|what\(\)|Error|error:", line) and "elastic" not in line][:20]
        cause += lines[fatal:fatal + 40]
        assert proc.returncode == 0, "\n".join(cause) + "\n...\n" + proc.stderr[-2000:]

    def used(ckpt) -> dict[int, set]:
        return {int(e): {(s, p) for s, ranges in prog["used"].items() for a, b in ranges for p in range(a, b)}
                for e, prog in ckpt["stream"]["progress"].items()}

    launch(4, 2)
    first = load_checkpoint(tmp_path / "run" / "last.pt")
    assert first["step"] == 2
    launch(2, 3)  # one more update with half the processes: still inside epoch 0
    mid = load_checkpoint(tmp_path / "run" / "last.pt")
    before, now = used(first)[0], used(mid)[0]
    assert before < now < set().union(*[{(s.name, p) for p in range(s.entries)} for s in read_index(root).shards])
    assert mid["stream"]["marked"]["0"] == len(now)  # no utterance twice, over both launches
    launch(2, 6)  # on into epoch 1
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["step"] == 6 and max(used(last)) == 1
    for epoch, entries in used(last).items():
        assert last["stream"]["marked"][str(epoch)] == len(entries), epoch


def test_sharded_pretraining_refuses_data_keys_its_stream_would_not_apply(corpus, tmp_path: Path) -> None:
    from cssl.utils.config import ConfigError, load_config, preset
    from pretrain.config import PretrainConfig
    from pretrain.train import main, unsupported_by_shards

    _, root = corpus
    base = [f"data.manifest={root}", "mixed_precision=no", "data.num_workers=0", f"out_dir={tmp_path / 'run'}"]
    for key in ("data.augment.speed_prob=0.5", "data.max_batch_size=4", "data.bucket=false", "data.max_samples=32000"):
        cfg = load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [*base, key])
        assert [k.lower() for k in unsupported_by_shards(cfg.data)] == [key]
        with pytest.raises(ConfigError, match=key.split("=")[0].replace(".", r"\.")):
            main(cfg)
    assert unsupported_by_shards(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), base).data) == []


def test_resuming_after_resharding_or_with_a_manifest_is_refused(corpus, tmp_path: Path) -> None:
    from cssl.data.manifest import write_manifest
    from cssl.utils.config import load_config, preset
    from pretrain.config import PretrainConfig
    from pretrain.train import main

    manifest, root = corpus
    shards = tmp_path / "shards"
    write_shards(manifest, shards, shard_hours=8 / 3600)
    args = ["mixed_precision=no", "data.num_workers=0", "data.max_batch_samples=64000", "data.crop_samples=16000",
            "loss.num_distractors=5", "save_every=2", "valid_every=100", "optim.max_steps=4", f"out_dir={tmp_path / 'run'}"]
    main(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [*args, f"data.manifest={shards}", "stop_after=2"]))
    shutil.rmtree(shards)
    write_shards(manifest, shards, shard_hours=20 / 3600)  # the same audio, cut into other shards
    with pytest.raises(DataError, match="the shards changed since the checkpoint"):
        main(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [*args, f"data.manifest={shards}", "resume=auto"]))
    write_manifest(manifest, tmp_path / "all.tsv")
    with pytest.raises(DataError, match="written by a run over shards"):
        main(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [*args, f"data.manifest={tmp_path / 'all.tsv'}",
                                                                       "resume=auto"]))


def test_a_process_whose_shards_are_all_unreadable_says_so_not_that_the_epoch_was(corpus, tmp_path: Path) -> None:
    from cssl.train.shard_batch_stream import ShardBatchStream

    _, root = corpus
    copy = tmp_path / "shards"
    shutil.copytree(root, copy)
    index = read_index(copy)
    for shard in index.shards:  # every member of every shard is garbage (tar intact)
        path = index.path(shard)
        with tarfile.open(path) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(path, "w") as tar:
            for member, data in members:
                data = data if member.name.endswith(".json") else b"RIFF garbage"
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    cfg = StreamConfig(max_batch_samples=200_000, shuffle_buffer=2, window=4)
    with pytest.raises(DataError, match=r"the shards of process 1 of 2, a whole epoch gave no usable audio"):
        next(ShardBatchStream(read_index(copy), cfg, rank=1, world=2))
    with pytest.raises(DataError, match=r"a whole epoch \(\d+ utterances\) gave no usable audio"):
        next(ShardBatchStream(read_index(copy), cfg))
