"""Streaming batches from shards: sequential reads, a shuffle buffer, length bucketing in a
window, shards dealt to ranks and dataloader workers without overlap, and an exact resume
point that survives a change of world size.

Planning an epoch: the shards are put in an order seeded by (seed, epoch); the ones not yet
finished are dealt round-robin to the ``world x workers`` readers (reader ``rank x workers +
worker``), so no two readers share a shard. Each reader streams its shards' entries through
a shuffle buffer, cuts a window of them into batches of similar length (at most
``max_batch_samples`` padded samples each) and yields those batches in a shuffled order.

Resume: every batch names its entries (shard, position). The consumer (the training loop,
in the main process, after the batch is used) marks them in :class:`EpochProgress`; the
checkpoint stores that (ranks' progress merged: their shards are disjoint). A resumed
epoch skips what was marked, whatever was read ahead, buffered or prefetched: with any
number of processes and workers every entry of the epoch is used once and none twice
(tested: 4 readers killed part-way, resumed with 2). The state is small: per shard a list
of consumed ranges, which a shuffle buffer keeps to a few per partly read shard.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from cssl.data.audio import AudioError, normalize_wave, prepare
from cssl.data.audio import decode as decode_audio
from cssl.data.shards import ShardIndex, ShardInfo
from cssl.utils.seeding import mix_seed


@dataclass
class EpochProgress:
    """Which entries of an epoch have been used, per shard."""

    epoch: int = 0
    """The epoch this progress belongs to."""
    used: dict[str, set[int]] = field(default_factory=dict)
    """Shard name -> positions of used entries."""

    def mark(self, items: list[tuple[str, int]]) -> None:
        """Records entries (shard, position) as used."""
        for shard, position in items:
            self.used.setdefault(shard, set()).add(position)

    def merge(self, other: EpochProgress) -> EpochProgress:
        """The union with another reader's progress of the same epoch."""
        if other.epoch != self.epoch:
            raise ValueError(f"cannot merge progress of epochs {self.epoch} and {other.epoch}")
        out = EpochProgress(self.epoch, {k: set(v) for k, v in self.used.items()})
        out.mark([(s, p) for s, ps in other.used.items() for p in ps])
        return out

    def finished(self, shard: ShardInfo) -> bool:
        return len(self.used.get(shard.name, ())) >= shard.entries

    def count(self) -> int:
        return sum(len(v) for v in self.used.values())

    def state_dict(self) -> dict:
        """Plain containers for a checkpoint: per shard, sorted ``[start, end)`` ranges."""
        return {"epoch": self.epoch, "used": {k: _ranges(v) for k, v in sorted(self.used.items())}}

    @classmethod
    def from_state(cls, state: dict) -> EpochProgress:
        return cls(int(state["epoch"]), {k: {p for a, b in r for p in range(a, b)} for k, r in state["used"].items()})


@dataclass
class StreamConfig:
    """How batches are formed from the stream."""

    max_batch_samples: int = 1_400_000
    """Padded samples per batch (length x batch size)."""
    shuffle_buffer: int = 1000
    """Entries shuffled together as they stream in."""
    window: int = 256
    """Entries sorted by length and cut into batches together."""
    crop_samples: int | None = None
    """Longer utterances are cut to this many samples (random offset)."""
    seed: int = 0
    """Seed of the epoch plans, buffers and crops."""
    normalize: bool = False
    """Zero mean, unit variance per utterance (after cropping)."""


def plan(index: ShardIndex, epoch: int, seed: int, reader: int, readers: int,
         progress: EpochProgress | None = None) -> list[ShardInfo]:
    """The shards reader ``reader`` of ``readers`` streams in ``epoch`` (finished ones left out)."""
    order = list(index.shards)
    random.Random(mix_seed(seed, epoch, 0)).shuffle(order)
    todo = [s for s in order if progress is None or not progress.finished(s)]
    return todo[reader::readers]


@dataclass
class StreamBatch:
    """A padded batch and what it is made of."""

    waves: torch.Tensor
    """(B, T) float32, zero padded."""
    lengths: torch.Tensor
    """(B,) valid samples."""
    items: list[tuple[str, int]]
    """(shard, position) per row: what to mark as used."""
    keys: list[int]
    """The rows' keys (their position in the manifest the shards were written from): per-utterance seeds."""
    texts: list[str | None]
    """Transcripts per row."""
    bad: list[tuple[str, str]] = field(default_factory=list)
    """(shard or entry, error) of what was skipped since the previous batch: count and report them."""


class ShardStream(IterableDataset):
    """Batches of one rank's share of an epoch (dataloader workers split it further)."""

    def __init__(self, index: ShardIndex, cfg: StreamConfig, epoch: int = 0, rank: int = 0, world: int = 1,
                 progress: EpochProgress | None = None) -> None:
        index.check()
        self.index, self.cfg, self.epoch, self.rank, self.world = index, cfg, epoch, rank, world
        self.progress = progress if progress is not None and progress.epoch == epoch else EpochProgress(epoch)

    def __iter__(self) -> Iterator[StreamBatch]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        reader = self.rank * workers + worker
        rng = random.Random(mix_seed(self.cfg.seed, self.epoch, 1000 + reader))
        shards = plan(self.index, self.epoch, self.cfg.seed, reader, self.world * workers, self.progress)
        bad: list[tuple[str, str]] = []
        window: list[dict] = []
        for entry in _shuffled(self._entries(shards, bad), self.cfg.shuffle_buffer, rng):
            window.append(entry)
            if len(window) >= self.cfg.window:
                yield from self._batches(window, rng, bad)
                window = []
        if window or bad:
            yield from self._batches(window, rng, bad)

    def _entries(self, shards: list[ShardInfo], bad: list[tuple[str, str]]) -> Iterator[dict]:
        for shard in shards:
            used = self.progress.used.get(shard.name, set())
            for entry in read_shard(self.index.path(shard), bad, shard.entries):
                if entry["position"] not in used:
                    yield entry

    def _batches(self, window: list[dict], rng: random.Random, bad: list[tuple[str, str]]) -> Iterator[StreamBatch]:
        decoded = []
        for entry in window:
            try:
                wave = decode(entry["audio"], f"{entry['shard']}:{entry['name']}")
            except AudioError as err:
                bad.append((str(err.path), f"{err.reason}: {err.detail}" if err.detail else err.reason))
                continue
            crop = self.cfg.crop_samples
            if crop and wave.numel() > crop:
                start = rng.randrange(wave.numel() - crop + 1)
                wave = wave[start:start + crop]
            if self.cfg.normalize:
                wave = normalize_wave(wave)
            decoded.append((entry, wave))
        decoded.sort(key=lambda item: item[1].numel())
        groups, current = [], []
        for item in decoded:
            if current and item[1].numel() * (len(current) + 1) > self.cfg.max_batch_samples:
                groups.append(current)
                current = []
            current.append(item)
        if current:
            groups.append(current)
        rng.shuffle(groups)
        if not groups and bad:
            yield StreamBatch(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), [], [], [], list(bad))
            bad.clear()
        for rows in groups:
            lengths = torch.tensor([w.numel() for _, w in rows])
            waves = torch.zeros(len(rows), int(lengths.max()))  # (B, T)
            for i, (_, w) in enumerate(rows):
                waves[i, : w.numel()] = w
            yield StreamBatch(waves, lengths, [(e["shard"], e["position"]) for e, _ in rows],
                              [int(e["key"]) for e, _ in rows], [e["meta"].get("text") for e, _ in rows], list(bad))
            bad.clear()


def read_shard(path: Path, bad: list[tuple[str, str]], entries: int | None = None) -> Iterator[dict]:
    """The entries of a shard in order (``position`` 0, 1, ...); a truncated or corrupt shard
    yields what it can and adds to ``bad`` each entry it lost (``NAME#POSITION``, from the index's
    count of ``entries``; the shard's name once when the count is unknown) with the error."""
    pending: dict[str, dict] = {}
    position = 0
    try:
        with tarfile.open(path, "r|") as tar:  # a stream: sequential reads only
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                data = tar.extractfile(member).read()
                part = pending.setdefault(key, {})
                if ext == "json":
                    part["meta"] = json.loads(data)
                else:
                    part["audio"], part["name"] = data, member.name
                if "meta" in part and "audio" in part:
                    del pending[key]
                    yield {"shard": path.name, "position": position, "key": key, **part}
                    position += 1
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        why = f"{type(err).__name__}: {err} (the shard breaks after {position} of its {entries or '?'} entries)"
        lost = range(position, entries) if entries is not None and entries > position else None
        bad.extend([(f"{path.name}#{p}", why) for p in lost] if lost else [(path.name, why)])


def decode(data: bytes, name: str) -> torch.Tensor:
    """Mono float32 at 16 kHz from an audio file's bytes (the checks of :func:`~cssl.data.audio.read_audio`,
    resampled by :func:`~cssl.data.audio.prepare`)."""
    samples, rate = decode_audio(io.BytesIO(data), name)
    return prepare(torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1))), rate, name)


def _shuffled(items: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """A shuffle buffer: holds ``size`` items, yields a random one as each new one arrives."""
    buffer: list[dict] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = rng.randrange(size)
        buffer[i], item = item, buffer[i]
        yield item
    rng.shuffle(buffer)
    yield from buffer


def _ranges(positions: set[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for p in sorted(positions):
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return out
