"""Shared fixtures: generated audio files, good and bad."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def tone(seconds: float, freq: float = 440.0, rate: int = 16000, amp: float = 0.3) -> np.ndarray:
    """A sine tone as float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = 16000, subtype: str | None = None) -> Path:
    """Writes audio with soundfile, creating folders; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def make_bad_files(folder: Path) -> dict[str, str]:
    """Writes one file per kind of bad input; returns {relative path: expected reject reason}."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}

    (folder / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = "empty file"

    full = write(folder / "_full.flac", tone(1.0)).read_bytes()
    (folder / "_full.flac").unlink()
    (folder / "truncated.flac").write_bytes(full[: len(full) // 2])
    expected["truncated.flac"] = "cannot decode"

    wav = write(folder / "_full.wav", tone(1.0)).read_bytes()
    (folder / "_full.wav").unlink()
    (folder / "truncated.wav").write_bytes(wav[: len(wav) // 2])
    expected["truncated.wav"] = "truncated"

    rng = np.random.default_rng(0)
    (folder / "corrupt.wav").write_bytes(b"RIFF" + rng.bytes(2000))
    expected["corrupt.wav"] = "cannot decode"

    (folder / "notes.flac").write_text("this is a text file, not audio\n")
    expected["notes.flac"] = "cannot decode"

    write(folder / "lowrate.wav", tone(1.0, rate=4000), rate=4000)
    expected["lowrate.wav"] = "unexpected sample rate"

    write(folder / "sixchannel.wav", np.stack([tone(0.5)] * 6, axis=1))
    expected["sixchannel.wav"] = "unexpected channel count"

    nan = tone(1.0)
    nan[100] = np.nan
    write(folder / "nan.wav", nan, subtype="FLOAT")
    expected["nan.wav"] = "non-finite samples"

    inf = tone(1.0)
    inf[5] = np.inf
    write(folder / "inf.wav", inf, subtype="FLOAT")
    expected["inf.wav"] = "non-finite samples"

    write(folder / "zero.wav", np.zeros(0, dtype=np.float32))
    expected["zero.wav"] = "zero length"
    return expected


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Runs started in-process may set torch's thread count (``threads=``); later tests get it back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def bad_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder with two good files and one file per kind of bad input."""
    folder = tmp_path / "audio"
    expected = make_bad_files(folder)
    write(folder / "good" / "a.wav", tone(1.0, 300))
    write(folder / "good" / "b.flac", tone(0.5, 500, rate=8000), rate=8000)
    return folder, expected
