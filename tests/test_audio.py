from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from cssl.data.audio import AudioError, header, load_audio, normalize_wave, prepare
from tests.conftest import tone, write


def test_resampling_matches_torchaudio_and_keeps_pitch(tmp_path: Path) -> None:
    x = tone(1.0, freq=440, rate=8000)
    path = write(tmp_path / "a.wav", x, rate=8000, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.shape == (16000,) and wave.dtype == torch.float32
    assert torch.allclose(wave, AF.resample(torch.from_numpy(x), 8000, 16000), atol=1e-6)
    spectrum = torch.fft.rfft(wave).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1  # 1 Hz bins for a 1 s clip


def test_downmix_is_channel_mean(tmp_path: Path) -> None:
    left, right = tone(0.5, 300), tone(0.5, 700)
    path = write(tmp_path / "st.flac", np.stack([left, right], axis=1), subtype="PCM_24")
    wave = load_audio(path)
    assert torch.allclose(wave, torch.from_numpy((left + right) / 2), atol=1e-5)


def test_normalize_gives_zero_mean_unit_variance(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", 0.1 * tone(1.0) + 0.2)
    wave = load_audio(path, normalize=True)
    assert abs(float(wave.mean())) < 1e-4 and abs(float(wave.std(unbiased=False)) - 1) < 1e-3
    assert torch.allclose(normalize_wave(torch.ones(5)), torch.zeros(5))


def test_strict_rate_and_channel_checks(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", np.stack([tone(0.2)] * 3, axis=1), rate=22050)
    with pytest.raises(AudioError, match="unexpected sample rate"):
        load_audio(path, expected_rate=16000)
    with pytest.raises(AudioError, match="unexpected channel count"):
        load_audio(path, max_channels=2)
    assert header(path) == (round(0.2 * 16000), 22050, 3)


@pytest.mark.parametrize(
    "name", ["empty.wav", "truncated.flac", "truncated.wav", "corrupt.wav", "notes.flac", "nan.wav", "inf.wav",
             "zero.wav"],
)
def test_bad_files_raise_audio_error_with_reason(bad_folder: tuple[Path, dict[str, str]], name: str) -> None:
    folder, expected = bad_folder
    with pytest.raises(AudioError) as info:
        load_audio(folder / name)
    assert info.value.reason == expected[name]
    assert name in str(info.value)


def test_missing_file_and_arrays() -> None:
    with pytest.raises(AudioError, match="missing"):
        load_audio("/no/such/file.wav")
    with pytest.raises(AudioError, match="zero length"):
        prepare(torch.zeros(0), 16000)
    assert prepare(torch.ones(800), 8000).shape == (1600,)
