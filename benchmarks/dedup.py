"""Near-duplicate detection on a planted set, and the speed of the index at 100,000 utterances.

    python benchmarks/dedup.py [--manifest M] [--originals 200] [--copies 100] [--out runs/bench-dedup]

Planted set: ``--originals`` utterances of a manifest (default: the demo corpus's train split,
synthesized when missing; Mini LibriSpeech's train speakers where the development recordings are),
and ``--copies`` of them changed as a re-upload would be: re-encoded (Opus at 24 kbit/s or MP3),
gain x0.5 to x2, trimmed by 0-100 ms at the start and the end, and noise at 1% of the signal's RMS
(40 dB SNR), each copy with every change at once. Precision and recall of ``cssl.data.dedup.within``
over a grid of thresholds (the default is chosen here: the lowest with precision 1 on every set
measured), the pairs that fail, and the CPU seconds. Then 100,000 clustered index keys with 2,000
noisy copies planted, indexed and queried for 10 neighbours each (the index ``cssl.data.dedup``
uses at that size), timed, with the share of copies whose source comes back.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cssl import SAMPLE_RATE  # noqa: E402
from cssl.data import dedup  # noqa: E402
from cssl.data.audio import load_audio  # noqa: E402
from cssl.data.manifest import read_manifest  # noqa: E402

THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def changed_copy(wave: torch.Tensor, rng: random.Random, folder: Path, name: str) -> torch.Tensor:
    """``wave`` re-encoded (Opus or MP3), gain-changed, trimmed at both ends and with 1% noise, read back."""
    x = wave.numpy().copy()
    start, end = (int(rng.uniform(0, 0.1) * SAMPLE_RATE) for _ in range(2))
    x = x[start:len(x) - end]
    x = x * 2 ** rng.uniform(-1, 1)
    x = x + np.random.default_rng(rng.randrange(2**31)).normal(0, 0.01 * np.sqrt((x**2).mean()), len(x))
    x = np.clip(x, -1, 1).astype(np.float32)
    if rng.random() < 0.5:
        path = folder / f"{name}.opus"
        sf.write(path, x, SAMPLE_RATE, format="OGG", subtype="OPUS")
    else:
        path = folder / f"{name}.mp3"
        sf.write(path, x, SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III")
    return load_audio(path)


def planted(manifest: Path, originals: int, copies: int, seed: int) -> tuple[list[dedup.Fingerprint], dict[int, int]]:
    """Fingerprints of the originals then the copies, and ``copy index -> its original's index``."""
    m = read_manifest(manifest)
    rng = random.Random(seed)
    seen, entries = set(), []
    for e in rng.sample(list(m), len(m)):  # one utterance per transcript: a repeated sentence is no plant
        if e.text not in seen:
            seen.add(e.text)
            entries.append(e)
    entries = entries[:originals]
    waves = [load_audio(m.audio_path(e)) for e in entries]
    prints = [dedup.fingerprint(w) for w in waves]
    twins = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c, i in enumerate(rng.sample(range(len(waves)), min(copies, len(waves)))):
            twins[len(prints)] = i
            prints.append(dedup.fingerprint(changed_copy(waves[i], rng, Path(tmp), f"copy{c}")))
    return prints, twins


def score(prints: list[dedup.Fingerprint], twins: dict[int, int], threshold: float) -> dict:
    matches = dedup.within(prints, threshold)
    found = {m.index for m in matches}
    right = sum(1 for m in matches if twins.get(m.index) == m.twin)
    return {"threshold": threshold, "found": len(found), "correct": right,
            "precision": right / len(found) if found else 1.0, "recall": right / len(twins),
            "missed": sorted(set(twins) - {m.index for m in matches if twins.get(m.index) == m.twin}),
            "wrong": sorted((m.index, m.twin) for m in matches if twins.get(m.index) != m.twin)}


def clustered_keys(count: int, copies: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit keys around 300 centres (utterances of a corpus are alike) whose last ``copies`` are noisy copies
    (cosine about 0.9 with their source: farther than the copies of the planted set) of earlier keys; and the sources."""
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(300, dim))[rng.integers(0, 300, count)] + 0.6 * rng.normal(size=(count, dim))
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    sources = rng.choice(count - copies, copies, replace=False)
    keys[count - copies:] = keys[sources] + 0.04 * rng.normal(size=(copies, dim))
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    return keys.astype(np.float32), sources


def index_speed(count: int, copies: int = 2000) -> tuple[float, float]:
    """Seconds to index ``count`` keys and query each for its neighbours; the share of planted copies
    whose source is among them."""
    keys, sources = clustered_keys(count, copies, dedup.SEGMENTS * dedup.N_MELS // 2)
    started = time.perf_counter()
    _, neighbours = dedup.summary_neighbours(keys, keys, dedup.NEIGHBOURS)
    seconds = time.perf_counter() - started
    found = np.mean([s in neighbours[count - copies + i] for i, s in enumerate(sources)])
    return seconds, float(found)


def default_manifest() -> Path:
    ls = ROOT / "runs" / "librispeech" / "train.jsonl"
    if ls.is_file():
        return ls
    from cssl.experiments.steps import synthesize

    corpus = ROOT / "runs" / "demo" / "corpus"
    synthesize(corpus, 1.0, 0)
    return corpus / "train.tsv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-size", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-dedup")
    args = parser.parse_args(argv)
    manifest = args.manifest or default_manifest()
    started = time.process_time()
    prints, twins = planted(manifest, args.originals, args.copies, args.seed)
    fingerprint_cpu = time.process_time() - started
    rows = [score(prints, twins, t) for t in THRESHOLDS]
    print(f"# Near duplicates planted in {manifest} ({len(prints) - len(twins)} originals, {len(twins)} changed copies; "
          f"fingerprints {fingerprint_cpu:.1f} CPU s)\n")
    print("| threshold | found | correct | precision | recall |\n|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['threshold']:.2f} | {r['found']} | {r['correct']} | {r['precision']:.3f} | {r['recall']:.3f} |")
    chosen = next(r for r in rows if r["threshold"] == dedup.THRESHOLD)
    print(f"\ndefault threshold {dedup.THRESHOLD}: missed copies {chosen['missed']}, wrong pairs {chosen['wrong']}")
    seconds, found = index_speed(args.index_size)
    kind = "exact" if args.index_size <= dedup.EXACT_UP_TO else f"inverted file, {dedup.PROBES} cells probed"
    print(f"\nindex + query of {args.index_size:,} keys ({dedup.SEGMENTS * dedup.N_MELS // 2} dims, {kind}, "
          f"{dedup.NEIGHBOURS} neighbours each, {torch.get_num_threads()} threads): {seconds:.1f} s; "
          f"planted copies whose source is a neighbour: {found:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dedup.json").write_text(json.dumps({"manifest": str(manifest), "rows": rows, "index_seconds": seconds,
                                                     "index_recall": found,
                                                     "index_size": args.index_size}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
