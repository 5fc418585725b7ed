"""Generated, learnable audio for training tests: sequences of harmonic tones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from cssl.data.manifest import Entry, Manifest, write_manifest

NOTES = (220.0, 277.2, 329.6, 392.0, 466.2, 523.3, 659.3, 784.0)


def tone_sequence(rng: np.random.Generator, seconds: float, rate: int = 16000) -> np.ndarray:
    """Notes of 80-200 ms drawn from a fixed scale, each with two harmonics and a soft envelope."""
    out = []
    total = int(seconds * rate)
    while sum(len(x) for x in out) < total:
        n = int(rng.uniform(0.08, 0.2) * rate)
        f = NOTES[rng.integers(len(NOTES))]
        t = np.arange(n) / rate
        note = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t) + 0.25 * np.sin(6 * np.pi * f * t)
        note *= np.hanning(n) ** 0.3
        out.append(note)
    wave = np.concatenate(out)[:total] * 0.2 + rng.normal(0, 0.005, total)
    return wave.astype(np.float32)


def tone_corpus(folder: Path, count: int, seconds: tuple[float, float] = (1.5, 3.0), seed: int = 0,
                name: str = "train.tsv") -> Path:
    """Writes ``count`` tone-sequence files and a fairseq manifest; returns the manifest path."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        wave = tone_sequence(rng, rng.uniform(*seconds))
        rel = f"audio/{seed}_{i:04d}.flac"
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(folder / rel, wave, 16000)
        entries.append(Entry(rel, len(wave)))
    path = folder / name
    write_manifest(Manifest(folder, entries), path)
    return path
