"""Sharded corpora at scale: opening a 2-million-utterance corpus, and streaming throughput.

    python benchmarks/shards.py [--entries 2000000] [--utterances 2000] [--repeats 3]

1. Opening: a 2-million-entry corpus listed as a manifest (``.tsv``, what the per-file
   loader reads into memory) against the same corpus's shard index (1,000 utterances per
   shard; the index lists shards, not utterances). Time and peak Python memory
   (tracemalloc) of writing and of opening each; synthetic entries, no audio.
2. Streaming: ``--utterances`` FLAC files of 1 s, read into padded batches by the per-file
   loader (manifest, one file open per utterance, length-bucketed sampler) and by the shard
   stream (sequential tar reads, shuffle buffer, bucketing window), one thread, no workers:
   audio seconds per second per core, median of ``--repeats``, and their ratio.

Prints the CPU model beside the figures; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cssl.data.dataset import DataConfig, build_loader
from cssl.data.manifest import Entry, Manifest, read_manifest, write_manifest
from cssl.data.shard_loader import ShardStream, StreamConfig
from cssl.data.shards import FORMAT, INDEX, read_index, write_shards


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
        return name + (" (AVX512_BF16)" if "avx512_bf16" in out else " (no AVX512_BF16)")
    except (OSError, StopIteration):
        return "unknown CPU"


def measured(fn):
    """(seconds, peak MiB of Python allocations, result) of ``fn()``: timed alone, then run again under tracemalloc."""
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def opening(folder: Path, entries: int, per_shard: int = 1000) -> list[str]:
    manifest = Manifest(folder, [Entry(f"audio/{i // 1000:05d}/{i:09d}.flac", 16000 + i % 32000) for i in range(entries)])
    w_manifest = measured(lambda: write_manifest(manifest, folder / "big.tsv"))
    shards = [{"name": f"shard-{i:06d}.tar", "entries": per_shard, "seconds": per_shard * 2.0, "bytes": per_shard * 40_000}
              for i in range(entries // per_shard)]
    w_index = measured(lambda: (folder / INDEX).write_text(json.dumps({"format": FORMAT, "labeled": False,
                                                                       "shards": shards})))
    r_manifest = measured(lambda: len(read_manifest(folder / "big.tsv")))
    r_index = measured(lambda: read_index(folder).entries)
    assert r_manifest[2] == r_index[2] == entries
    size = lambda p: (folder / p).stat().st_size / 2**20  # noqa: E731
    return [
        f"| {entries:,}-entry corpus | write s | open s | open peak MiB | file MiB |", "|---|---:|---:|---:|---:|",
        f"| manifest (.tsv) | {w_manifest[0]:.2f} | {r_manifest[0]:.2f} | {r_manifest[1]:.0f} | {size('big.tsv'):.1f} |",
        f"| shard index ({len(shards):,} shards) | {w_index[0]:.3f} | {r_index[0]:.4f} | {r_index[1]:.2f} | "
        f"{size(INDEX):.2f} |",
        "", f"Opening the index: {r_manifest[0] / max(r_index[0], 1e-9):.0f}x faster, "
            f"{r_manifest[1] / max(r_index[1], 1e-9):.0f}x less memory than the manifest.",
    ]


def streaming(folder: Path, utterances: int, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    entries = []
    for i in range(utterances):
        seconds = float(rng.uniform(0.6, 1.4))
        path = folder / "audio" / f"{i:06d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
        entries.append(Entry(f"audio/{i:06d}.flac", int(seconds * 16000)))
    manifest = Manifest(folder, entries)
    write_manifest(manifest, folder / "train.tsv")
    index = write_shards(manifest, folder / "shards", shard_hours=200 / 3600)
    audio = sum(e.duration for e in entries)
    cfg = DataConfig(manifest=str(folder / "train.tsv"), crop_samples=None, min_samples=0, max_batch_samples=320_000,
                     num_workers=0)

    def per_file() -> int:
        loader = build_loader(cfg, folder / "train.tsv", train=True, seed=0)
        return sum(int(b.lengths.sum()) for b in loader.loader)

    def sharded() -> int:
        stream = ShardStream(index, StreamConfig(max_batch_samples=320_000, shuffle_buffer=500, window=256))
        return sum(int(b.lengths.sum()) for b in stream)

    rates = {}
    for name, fn in (("per-file loader (manifest)", per_file), ("shard stream", sharded)):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            samples = fn()
            times.append(time.perf_counter() - start)
        assert abs(samples / 16000 - audio) < 1.0, (name, samples / 16000, audio)
        rates[name] = audio / statistics.median(times)
    first, second = rates
    return [f"| {utterances} FLAC files, {audio / 60:.1f} min of audio, 1 thread | audio s / s / core |", "|---|---:|",
            *[f"| {name} | {rate:.0f} |" for name, rate in rates.items()],
            "", f"Shard stream / per-file loader: {rates[second] / rates[first]:.2f}x."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=2_000_000)
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "open").mkdir()
        lines = [f"# Sharded corpora ({cpu_model()})", "", *opening(Path(tmp) / "open", args.entries), "",
                 *streaming(Path(tmp) / "stream", args.utterances, args.repeats)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
