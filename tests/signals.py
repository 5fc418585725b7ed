"""Generated, learnable audio for training tests: sequences of harmonic tones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

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


LETTERS = "ABCDEFGH"
"""The tone language's alphabet: letter i is note ``NOTES[i]``."""


def tone_words(count: int, seed: int = 0) -> list[str]:
    """A lexicon of distinct 2-4 letter words over :data:`LETTERS`."""
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(LETTERS[i] for i in rng.integers(len(LETTERS), size=rng.integers(2, 5))))
    return sorted(words)


def spoken_tones(rng: np.random.Generator, text: str, snr_db: float, rate: int = 16000) -> np.ndarray:
    """A sentence of the tone language: a note per letter, silence between words, white noise at ``snr_db``."""
    parts = [np.zeros(int(rng.uniform(0.05, 0.15) * rate))]
    for word in text.split():
        for letter in word:
            n = int(rng.uniform(0.07, 0.12) * rate)
            f = NOTES[LETTERS.index(letter)] * rng.uniform(0.98, 1.02)  # a little pitch jitter per note
            t = np.arange(n) / rate
            parts.append((np.sin(2 * np.pi * f * t) + 0.4 * np.sin(4 * np.pi * f * t)) * np.hanning(n) ** 0.3)
        parts.append(np.zeros(int(rng.uniform(0.1, 0.2) * rate)))
    wave = np.concatenate(parts) * 0.3
    noise = rng.normal(0, 1, len(wave)) * np.sqrt(np.mean(wave**2) / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


def tone_language_corpus(folder: Path, counts: dict[str, int], lexicon: list[str], snr_db: float = 0.0,
                         seed: int = 0) -> dict[str, Path]:
    """Labeled tone-language splits (sentences of 2-5 lexicon words); returns {split: manifest path}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in counts.items():
        entries = []
        for i in range(count):
            text = " ".join(lexicon[j] for j in rng.integers(len(lexicon), size=rng.integers(2, 6)))
            wave = spoken_tones(rng, text, snr_db)
            rel = f"{split}/{i:04d}.flac"
            (folder / split).mkdir(parents=True, exist_ok=True)
            sf.write(folder / rel, wave, 16000)
            entries.append(Entry(rel, len(wave), text))
        out[split] = folder / f"{split}.tsv"
        write_manifest(Manifest(folder, entries), out[split])
    return out


def ctc_emissions(tokens: list[str] | tuple[str, ...], frames: list[dict[str, float]]) -> torch.Tensor:
    """(T, V) CTC log-probabilities: each listed frame's tokens share its mass (the rest get 1e-4),
    and a blank frame follows each, so repeated letters stay separate."""
    rows = []
    for probs in frames:
        for p in (probs, {"<blank>": 1.0}):
            row = torch.full((len(tokens),), 1e-4)
            for tok, mass in p.items():
                row[list(tokens).index(tok)] = mass
            rows.append((row / row.sum()).log())
    return torch.stack(rows)


def spell(text: str) -> list[dict[str, float]]:
    """Frames that spell ``text`` with certainty, one per character."""
    return [{ch: 1.0} for ch in text]
