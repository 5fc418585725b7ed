from __future__ import annotations

from pathlib import Path

import torch

from cssl.data.augment import AugmentConfig
from cssl.data.dataset import DataConfig, build_loader
from cssl.data.manifest import Entry, Manifest, write_manifest
from cssl.text.vocab import Vocabulary
from tests.conftest import tone, write


def _labeled(tmp_path: Path) -> Path:
    entries = []
    for i, (secs, text) in enumerate([(1.0, "one two"), (0.8, "three"), (1.2, "four five six"), (0.9, "...")]):
        write(tmp_path / f"a{i}.wav", tone(secs, 200 + 50 * i))
        entries.append(Entry(f"a{i}.wav", int(secs * 16000), text))
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    entries.append(Entry("bad.wav", 16000, "seven"))
    entries.append(Entry("tiny.wav", 100, "too short"))
    path = tmp_path / "m.jsonl"
    write_manifest(Manifest(tmp_path, entries), path)
    return path


def test_labeled_batches_pad_and_report_rejects(tmp_path: Path) -> None:
    path = _labeled(tmp_path)
    vocab = Vocabulary.build(["one two three four five six seven"])
    cfg = DataConfig(min_samples=1000, crop_samples=None, max_batch_samples=10**7, num_workers=0)
    loader = build_loader(cfg, path, vocab, train=False)
    assert loader.dropped == 1  # tiny.wav is below min_samples
    batches = list(loader)
    rejected = {(Path(r.path).name, r.reason) for b in batches for r in b.rejected}
    assert rejected == {("bad.wav", "cannot decode"), ("a3.wav", "empty transcript")}
    rows = sum(len(b) for b in batches)
    assert rows == 3
    for b in batches:
        for row, idx in enumerate(b.indices):
            n = int(b.lengths[row])
            assert torch.all(b.waves[row, n:] == 0)
            ids = b.targets[row, : int(b.target_lengths[row])].tolist()
            assert (b.targets[row, int(b.target_lengths[row]):] == -1).all()
            assert vocab.decode(ids) == ["ONE TWO", "THREE", "FOUR FIVE SIX"][idx]


def test_crops_and_augmentation_are_deterministic_per_epoch(tmp_path: Path) -> None:
    path = _labeled(tmp_path)
    aug = AugmentConfig(noise_prob=1.0, noise_types=["white"], snr_db=(10.0, 10.0))
    cfg = DataConfig(min_samples=1000, crop_samples=8000, max_batch_samples=10**7, num_workers=0, augment=aug)

    def epoch_data(epoch: int, workers: int) -> dict[int, torch.Tensor]:
        loader = build_loader(DataConfig(**{**cfg.__dict__, "num_workers": workers}), path, seed=3)
        loader.set_epoch(epoch)
        return {i: b.waves[r, : b.lengths[r]] for b in loader for r, i in enumerate(b.indices)}

    first, again, other = epoch_data(0, 0), epoch_data(0, 2), epoch_data(1, 0)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[i], again[i]) for i in first)  # same with worker processes
    assert all(len(w) <= 8000 for w in first.values())
    assert any(not torch.equal(first[i], other[i]) for i in first)  # a new epoch draws anew


def test_speed_perturbed_batches_stay_within_max_batch_samples(tmp_path: Path) -> None:
    from cssl.data.augment import Augmenter

    entries = []
    for i, seconds in enumerate([1.0, 1.0, 1.0, 1.0, 0.9, 0.8]):
        write(tmp_path / f"u{i}.wav", tone(seconds, 200 + 20 * i))
        entries.append(Entry(f"u{i}.wav", int(seconds * 16000)))
    write_manifest(Manifest(tmp_path, entries), tmp_path / "m.tsv")
    cfg = DataConfig(manifest=str(tmp_path / "m.tsv"), crop_samples=None, min_samples=1000, max_batch_samples=32000,
                     num_workers=0, augment=AugmentConfig(speed_prob=1.0, speed_factors=[0.9]))
    loader = build_loader(cfg, cfg.manifest, train=True, seed=0)
    assert Augmenter(cfg.augment).longest(16000) == len(Augmenter(cfg.augment)(torch.from_numpy(tone(1.0)), torch.Generator()))
    for epoch in range(2):
        loader.set_epoch(epoch)
        for batch in loader:
            assert batch.waves.numel() <= cfg.max_batch_samples, tuple(batch.waves.shape)  # slowed down 11%: still within


def test_each_process_resumes_at_its_own_batch_count(tmp_path: Path) -> None:
    from cssl.train.batch_stream import BatchStream

    entries = []
    for i in range(8):
        write(tmp_path / f"u{i}.wav", tone(1.0, 200 + 20 * i))
        entries.append(Entry(f"u{i}.wav", 16000))
    write_manifest(Manifest(tmp_path, entries), tmp_path / "m.tsv")
    cfg = DataConfig(manifest=str(tmp_path / "m.tsv"), crop_samples=None, max_batch_size=1, num_workers=0)
    # rank 1 of 2 met an unusable batch and took one more than rank 0
    saved = {"epoch": 0, "consumed": 2, "ranks": [[0, 2], [0, 3]]}
    for rank, expect in ((0, 2), (1, 3)):
        stream = BatchStream(build_loader(cfg, cfg.manifest, train=True, seed=0, num_replicas=2, rank=rank))
        stream.load_state_dict(saved)
        assert stream.consumed == expect
    # another number of processes re-shares the epoch from rank 0's count
    one = BatchStream(build_loader(cfg, cfg.manifest, train=True, seed=0))
    one.load_state_dict(saved)
    assert one.consumed == 2
