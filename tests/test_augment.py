"""Tests for waveform augmentation: achieved SNR, speed, gain, determinism, noise folders."""

from __future__ import annotations

import dataclasses
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cssl import SAMPLE_RATE
from cssl.data.augment import (
    AugmentConfig,
    Augmenter,
    NoiseFolderError,
    apply_gain,
    band_limit,
    decaying_noise,
    impulse_noise,
    mix_at_snr,
    segment,
    speed_perturb,
    white_noise,
)
from cssl.utils.config import ConfigError, apply_dict, field_docs

SR = SAMPLE_RATE


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def speech_like(n: int = SR, seed: int = 1) -> torch.Tensor:
    """A few harmonics under a slow envelope plus a little noise: not flat, not silent."""
    t = torch.arange(n, dtype=torch.float64) / SR
    g = gen(seed)
    wave = sum(torch.sin(2 * math.pi * f * t) / k for k, f in enumerate((140.0, 280.0, 560.0, 1200.0), 1))
    wave = wave * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t)) + 0.01 * torch.randn(n, generator=g)
    return (0.3 * wave).to(torch.float32)


def measured_snr(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    s, y = clean.double(), noisy.double()
    return 10 * math.log10(s.pow(2).sum().item() / (y - s).pow(2).sum().item())


def rms_db(x: torch.Tensor) -> float:
    return 10 * math.log10(x.double().pow(2).mean().item())


def peak_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x.double() * torch.hann_window(x.numel(), dtype=torch.float64))
    return spectrum.abs().argmax().item() * SR / x.numel()


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Noise recordings at other rates and lengths: one longer, one shorter than the clips."""
    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    hum = np.sin(2 * np.pi * 60 * np.arange(8000 * 3) / 8000) + 0.3 * rng.standard_normal(8000 * 3)
    sf.write(folder / "hum_8k.wav", (0.2 * hum).astype(np.float32), 8000)
    babble = np.cumsum(rng.standard_normal((SR // 4, 2)), axis=0)  # brownish, stereo, 0.25 s
    (folder / "sub").mkdir()  # the folder is searched recursively
    sf.write(folder / "sub" / "babble.flac", 0.01 * babble, SR)
    return folder


def noise_cfg(kind: str, snr_db: float, noise_dir: Path | None = None) -> AugmentConfig:
    return AugmentConfig(
        noise_prob=1.0,
        noise_types=[kind],  # type: ignore[list-item]
        snr_db=(snr_db, snr_db),
        noise_dir=str(noise_dir) if noise_dir else None,
    )


# --- SNR ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["white", "impulse", "decaying", "background"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_achieved_snr_matches_target(kind: str, snr_db: float, noise_dir: Path) -> None:
    clean = speech_like()
    augment = Augmenter(noise_cfg(kind, snr_db, noise_dir))
    for seed in range(3):
        noisy = augment(clean, gen(seed))
        assert noisy.shape == clean.shape and noisy.dtype == torch.float32
        assert torch.isfinite(noisy).all()
        assert abs(measured_snr(clean, noisy) - snr_db) < 0.5


def test_snr_sampled_inside_range() -> None:
    clean = speech_like()
    augment = Augmenter(AugmentConfig(noise_prob=1.0, snr_db=(0.0, 10.0)))
    snrs = [measured_snr(clean, augment(clean, gen(seed))) for seed in range(8)]
    assert all(-0.5 < s < 10.5 for s in snrs)
    assert max(snrs) - min(snrs) > 2.0  # actually sampled, not fixed


def test_mix_at_snr_silent_inputs_return_signal() -> None:
    clean = speech_like(1000)
    silence = torch.zeros(1000)
    assert torch.equal(mix_at_snr(clean, silence, 10.0), clean)
    assert torch.equal(mix_at_snr(silence, white_noise(1000, gen()), 10.0), silence)
    out = Augmenter(noise_cfg("white", 0.0))(silence, gen())
    assert torch.isfinite(out).all() and torch.equal(out, silence)


def test_mix_at_snr_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        mix_at_snr(torch.ones(10), torch.ones(11), 0.0)


# --- noise generators ----------------------------------------------------------


def test_impulse_noise_density_and_values() -> None:
    noise = impulse_noise(SR, 0.01, gen())
    nonzero = noise[noise != 0]
    assert nonzero.numel() == round(0.01 * SR)
    assert set(nonzero.tolist()) == {-1.0, 1.0}
    assert impulse_noise(100, 1e-6, gen()).count_nonzero() == 1  # short clips still get a spike


def test_augmenter_impulse_density_inside_range() -> None:
    clean = speech_like()
    cfg = dataclasses.replace(noise_cfg("impulse", 10.0), impulse_density=(0.002, 0.004))
    augment = Augmenter(cfg)
    for seed in range(4):
        # Samples without a spike are left bit-exact, so spikes can be counted.
        touched = (augment(clean, gen(seed)) != clean).sum().item()
        assert 0.002 * SR <= touched <= 0.004 * SR


def test_decaying_noise_envelope_decreases() -> None:
    noise = decaying_noise(SR, gen())
    quarters = noise.view(4, -1)  # (T,) -> (4, T/4)
    rms = quarters.pow(2).mean(dim=1).sqrt()
    assert rms[0] > 4 * rms[3]
    assert torch.all(rms[:-1] > rms[1:])


def test_white_noise_is_unit_variance() -> None:
    noise = white_noise(SR, gen())
    assert abs(noise.std().item() - 1.0) < 0.03 and abs(noise.mean().item()) < 0.03


def test_segment_loops_short_recordings() -> None:
    rec = torch.arange(5.0)
    assert segment(rec, 12, 0.5).tolist() == [2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert segment(torch.arange(10.0), 4, 0.999).tolist() == [6, 7, 8, 9]
    assert segment(torch.arange(10.0), 4, 0.0).tolist() == [0, 1, 2, 3]


# --- speed and gain ----------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturb_length_and_pitch(factor: float) -> None:
    tone = torch.sin(2 * math.pi * 440.0 * torch.arange(SR) / SR)
    out = speed_perturb(tone, factor, SR)
    assert abs(out.numel() - SR / factor) <= 1
    assert peak_hz(out) == pytest.approx(440.0 * factor, abs=2.0)


def test_speed_through_augmenter() -> None:
    clean = speech_like()
    augment = Augmenter(AugmentConfig(speed_prob=1.0, speed_factors=[1.1]))
    out = augment(clean, gen())
    assert abs(out.numel() - SR / 1.1) <= 1 and out.dtype == torch.float32
    assert torch.equal(speed_perturb(clean, 1.0), clean)


@pytest.mark.parametrize("db", [-6.0, 3.5, 12.0])
def test_gain_changes_rms_by_db(db: float) -> None:
    clean = speech_like()
    assert rms_db(apply_gain(clean, db)) - rms_db(clean) == pytest.approx(db, abs=1e-3)
    out = Augmenter(AugmentConfig(gain_prob=1.0, gain_db=(db, db)))(clean, gen())
    assert rms_db(out) - rms_db(clean) == pytest.approx(db, abs=1e-3)


# --- narrow band ---------------------------------------------------------------------


def band_power(wave: torch.Tensor, low_hz: float, high_hz: float) -> float:
    """Power of ``wave`` between two frequencies (periodogram sum)."""
    spectrum = torch.fft.rfft(wave.double()).abs().pow(2)
    hz = torch.fft.rfftfreq(wave.numel(), d=1.0 / SR)
    return spectrum[(hz >= low_hz) & (hz < high_hz)].sum().item()


@pytest.mark.parametrize("rate", [8000, 11025])
def test_band_limit_removes_what_the_narrow_rate_cannot_hold(rate: int) -> None:
    noise = white_noise(SR, gen(4))  # flat spectrum: equal power per Hz up to 8 kHz
    out = band_limit(noise, rate, SR)
    assert out.shape == noise.shape and out.dtype == torch.float32
    edge = rate / 2
    # Above the new Nyquist frequency (past the resampler's roll-off) nothing is left...
    assert band_power(out, edge * 1.05, SR / 2) < 1e-4 * band_power(noise, edge * 1.05, SR / 2)
    # ...below it white noise keeps its power (the sharp filter's roll-off starts near 0.95 x Nyquist)
    assert band_power(out, 100, edge * 0.9) == pytest.approx(band_power(noise, 100, edge * 0.9), rel=0.02)
    tone = torch.sin(2 * math.pi * 440.0 * torch.arange(SR) / SR)
    assert peak_hz(band_limit(tone, rate, SR)) == pytest.approx(440.0, abs=2.0)
    assert torch.equal(band_limit(noise, SR, SR), noise)  # a rate at or above ours changes nothing


def test_band_comes_last_and_leaves_the_other_draws_alone() -> None:
    clean = speech_like()
    base = AugmentConfig(speed_prob=0.5, gain_prob=0.5, noise_prob=0.5)
    banded = dataclasses.replace(base, band_prob=1.0, band_rates=[8000])
    for seed in range(4):
        plain, narrow = Augmenter(base)(clean, gen(seed)), Augmenter(banded)(clean, gen(seed))
        assert torch.allclose(narrow, band_limit(plain, 8000, SR))
    assert Augmenter(AugmentConfig(band_prob=0.2)).enabled
    with pytest.raises(ConfigError, match="band_rates"):
        AugmentConfig(band_rates=[0])
    with pytest.raises(ConfigError, match="band_prob"):
        AugmentConfig(band_prob=2.0)


# --- the augmenter as a whole ---------------------------------------------------------


def full_cfg(noise_dir: Path) -> AugmentConfig:
    return AugmentConfig(
        noise_prob=1.0,
        noise_types=["white", "impulse", "decaying", "background"],
        snr_db=(0.0, 20.0),
        noise_dir=str(noise_dir),
        speed_prob=0.5,
        gain_prob=0.5,
    )


def test_deterministic_given_generator(noise_dir: Path) -> None:
    clean = speech_like()
    augment = Augmenter(full_cfg(noise_dir))
    fresh = pickle.loads(pickle.dumps(augment))  # as a data-loader worker receives it
    for seed in range(6):
        a, b = augment(clean, gen(seed)), fresh(clean, gen(seed))
        assert torch.equal(a, b)
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
    outs = [augment(clean, gen(seed)) for seed in range(6)]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert outs[i].shape != outs[j].shape or not torch.equal(outs[i], outs[j])


def test_default_config_is_identity() -> None:
    clean = speech_like().double()
    augment = Augmenter(AugmentConfig())
    assert not augment.enabled
    g = gen(3)
    state = g.get_state()
    out = augment(clean, g)
    assert out.dtype == torch.float32 and torch.equal(out, clean.float())
    assert torch.equal(g.get_state(), state)  # no random numbers consumed
    assert Augmenter(AugmentConfig(gain_prob=0.1)).enabled


def test_rejects_non_mono_input() -> None:
    with pytest.raises(ValueError, match="mono"):
        Augmenter(AugmentConfig(gain_prob=1.0))(torch.zeros(2, 100), gen())


# --- noise folder ----------------------------------------------------------------------


def test_missing_noise_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_noise"
    with pytest.raises(NoiseFolderError, match="no_such_noise"):
        Augmenter(noise_cfg("background", 10.0, missing))
    with pytest.raises(NoiseFolderError, match="noise_dir"):
        Augmenter(noise_cfg("background", 10.0, None))
    empty = tmp_path / "empty_noise"
    empty.mkdir()
    (empty / "readme.txt").write_text("not audio")
    augment = Augmenter(noise_cfg("background", 10.0, empty))
    with pytest.raises(NoiseFolderError, match="empty_noise.*no usable"):
        augment.load_noise()
    # A folder that is not needed is not checked.
    assert not Augmenter(AugmentConfig(noise_dir=str(missing))).enabled


def test_noise_bank_scans_recursively_and_resamples(noise_dir: Path) -> None:
    augment = Augmenter(noise_cfg("background", 10.0, noise_dir))
    assert augment.load_noise() == 2
    bank = augment.noise_bank
    assert bank is not None and [p.name for p in bank.files] == ["hum_8k.wav", "babble.flac"]
    assert bank._load(0).numel() == 3 * SR  # 3 s at 8 kHz, now at 16 kHz
    assert bank._load(1).numel() == SR // 4  # shorter than a clip: looped by draw()
    assert bank.draw(SR, gen()).shape == (SR,)


def test_corrupt_noise_file_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "noise"
    folder.mkdir()
    sf.write(folder / "good.wav", np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1, SR)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    (folder / "empty.ogg").write_bytes(b"")
    augment = Augmenter(noise_cfg("background", 5.0, folder))
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        assert augment.load_noise() == 1
    assert augment.noise_bank is not None and augment.noise_bank.skipped == 2
    clean = speech_like()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scanned once: no further warnings
        noisy = augment(clean, gen())
    assert abs(measured_snr(clean, noisy) - 5.0) < 0.5


# --- configuration -----------------------------------------------------------------------


def test_config_from_yaml_values() -> None:
    data = {
        "noise_prob": 1,
        "noise_types": ["white", "background"],
        "snr_db": [0, 15],
        "speed_factors": [0.95, 1.05],
        "gain_db": [-3, 3],
    }
    cfg = apply_dict(AugmentConfig(), data, source="test.yaml")
    assert cfg.snr_db == (0.0, 15.0) and isinstance(cfg.snr_db[0], float)
    assert cfg.noise_types == ["white", "background"] and cfg.speed_factors == [0.95, 1.05]
    with pytest.raises(ConfigError, match="noise_types"):
        apply_dict(AugmentConfig(), {"noise_types": ["pink"]}, source="test.yaml")
    with pytest.raises(ConfigError, match="noise_prob"):
        apply_dict(AugmentConfig(), {"noise_prob": 1.5}, source="test.yaml")
    with pytest.raises(ConfigError, match="snr_db"):
        AugmentConfig(snr_db=(10.0, 0.0))


def test_every_config_field_is_documented() -> None:
    docs = field_docs(AugmentConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(AugmentConfig)}
    assert all(docs.values())
