"""Data pipeline benchmark: decode + resample + augment throughput, and batch padding.

    python benchmarks/data_pipeline.py [--corpus runs/demo/corpus] [--repeats 5]

Prints, on one core (one process, one torch thread), the throughput in audio seconds
per second of each stage added in turn -- decode (soundfile), + resample to 16 kHz
(from 8, 22.05 and 44.1 kHz copies of the same audio), + augmentation (speed, gain,
white noise at a sampled SNR) -- as medians over repeats, with ratios against plain
decoding measured in the same run. Then the padding fraction of the length-bucketed
sampler against plain random batches on the demo corpus manifests, at the batch bound
of the tiny pretraining preset.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from cssl import SAMPLE_RATE
from cssl.data.audio import load_audio, read_audio, resample
from cssl.data.augment import AugmentConfig, Augmenter
from cssl.data.manifest import read_manifest
from cssl.data.sampler import BucketBatchSampler

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(corpus: Path, folder: Path, limit: int) -> dict[int, list[Path]]:
    """Copies of the first ``limit`` demo utterances at several rates (FLAC)."""
    manifest = read_manifest(corpus / "train.tsv")
    out: dict[int, list[Path]] = {}
    for rate in (8000, 16000, 22050, 44100):
        out[rate] = []
        for i, entry in enumerate(manifest.entries[:limit]):
            wave = load_audio(manifest.audio_path(entry))
            path = folder / f"{rate}_{i}.flac"
            sf.write(path, resample(wave, SAMPLE_RATE, rate).numpy(), rate)
            out[rate].append(path)
    return out


def timed(fn, files: list[Path], repeats: int) -> tuple[float, float]:
    """(median seconds per pass, audio seconds per pass)."""
    audio = sum(sf.info(str(f)).duration for f in files)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for f in files:
            fn(f)
        times.append(time.perf_counter() - start)
    return statistics.median(times), audio


def throughput(files: dict[int, list[Path]], repeats: int) -> list[tuple[str, float]]:
    augmenter = Augmenter(AugmentConfig(noise_prob=1.0, noise_types=["white"], speed_prob=1.0, gain_prob=1.0))
    gen = torch.Generator().manual_seed(0)
    rows = []
    secs, audio = timed(lambda f: read_audio(f), files[16000], repeats)
    rows.append(("decode (16 kHz FLAC)", audio / secs))
    for rate in (8000, 22050, 44100):
        secs, audio = timed(lambda f: load_audio(f), files[rate], repeats)
        rows.append((f"decode + resample {rate / 1000:g} kHz -> 16 kHz", audio / secs))
    secs, audio = timed(lambda f: augmenter(load_audio(f), gen), files[44100], repeats)
    rows.append(("decode + resample 44.1 kHz + speed, gain, noise", audio / secs))
    return rows


def padding(corpus: Path, max_batch_samples: int, crop: int | None) -> list[tuple]:
    """Per split: median padding and batch count over 5 epochs, bucketed, bucketed with a padding cap, random."""
    rows = []
    for split in ("unlabeled", "train"):
        path = corpus / f"{split}.tsv"
        if not path.is_file():
            continue
        lengths = [e.num_samples if crop is None else min(e.num_samples, crop) for e in read_manifest(path)]
        fractions = []
        for bucket, cap in ((True, None), (True, 0.05), (False, None)):
            sampler = BucketBatchSampler(lengths, max_batch_samples=max_batch_samples, bucket=bucket, seed=0,
                                         max_padding=cap)
            fractions.append(statistics.median(sampler.padding_fraction(epoch) for epoch in range(5)))
            fractions.append(statistics.median(len(sampler.plan(epoch)) for epoch in range(5)))
        rows.append((split, *fractions))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "demo" / "corpus")
    parser.add_argument("--files", type=int, default=40, help="utterances per rate")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not (args.corpus / "train.tsv").is_file():
        from cssl.synth.corpus import synthesize_corpus

        print(f"no demo corpus at {args.corpus}; synthesizing a small one", file=sys.stderr)
        synthesize_corpus(args.corpus, num_utterances=400, seed=0)
    print("# Data pipeline benchmark (1 process, 1 thread)\n")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_inputs(args.corpus, Path(tmp), args.files)
        rows = throughput(files, args.repeats)
    base = rows[0][1]
    print("| stage | audio s / s per core | vs decode |")
    print("|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")
    print("\n## Padding fraction (median over 5 epochs)\n")
    for label, bound, crop in (("tiny pretraining (crop 2 s, 256k samples)", 256_000, 32_000),
                               ("whole utterances, 320k samples (tiny fine-tuning)", 320_000, None),
                               ("whole utterances, 1.4M samples (BASE)", 1_400_000, None)):
        print(f"### {label}\n")
        print("| split | bucketed | batches | bucketed, max_padding 0.05 | batches | random batches | batches | "
              "random / bucketed |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for split, bucketed, n1, capped, n2, plain, n3 in padding(args.corpus, bound, crop):
            print(f"| {split} | {bucketed:.3%} | {n1:.0f} | {capped:.3%} | {n2:.0f} | {plain:.3%} | {n3:.0f} "
                  f"| {plain / max(bucketed, 1e-9):.1f}x |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
