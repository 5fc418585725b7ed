"""Waveform augmentation: speed perturbation, gain, additive noise at a sampled SNR, and a narrow band.

Used by both training stages on raw 16 kHz waveforms, before cropping and batching.
:class:`AugmentConfig` is the YAML-facing section; :class:`Augmenter` applies it to
one utterance with a caller-supplied ``torch.Generator``, so the data loader (which
seeds one generator per ``(seed, epoch, index)``) gets the same augmented audio again
after a resume. The building blocks are pure functions: tensors in, tensors out, no I/O.

Notation:

* ``T``: samples in a waveform; ``n``: samples of noise to generate.
* ``P(x) = mean(x**2)``: power of a waveform.
* ``SNR = 10 * log10(P(signal) / P(noise))`` in dB: 20 dB is faint noise, 0 dB is
  noise as loud as the speech, negative values bury the speech.
* speed factor ``f``: ``f > 1`` plays faster (shorter, higher pitch), ``T' ~ T / f``.
* gain in dB: amplitude is multiplied by ``10 ** (dB / 20)``.
* band rate ``r``: a narrowband channel keeps frequencies below ``r / 2`` (8 kHz: telephone
  and many older recordings, which hold nothing above 4 kHz).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from cssl import SAMPLE_RATE
from cssl.data.audio import AudioError, header, load_audio, resample
from cssl.utils.config import ConfigError

NoiseType = Literal["white", "impulse", "decaying", "background"]
"""The kinds of additive noise :class:`Augmenter` can mix in."""

NOISE_TYPES: tuple[str, ...] = get_args(NoiseType)

NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
"""Extensions scanned for in a background-noise folder (formats soundfile decodes)."""

# Powers at or below this (about -200 dB re full scale) count as silence: scaling
# noise to a ratio against nothing would divide by zero and produce NaN or inf.
_SILENCE_POWER = 1e-20


@dataclass
class AugmentConfig:
    """What to do to each training waveform; the defaults change nothing."""

    noise_prob: float = 0.0
    """Probability of adding noise to an utterance."""
    noise_types: list[NoiseType] = field(default_factory=lambda: ["white"])
    """Noise kinds drawn from uniformly: white, impulse, decaying, background."""
    snr_db: tuple[float, float] = (5.0, 20.0)
    """SNR range in dB (min, max); each noisy utterance draws one uniformly."""
    impulse_density: tuple[float, float] = (0.001, 0.01)
    """Range of the fraction of samples that carry an impulse spike (min, max)."""
    noise_dir: str | None = None
    """Folder of noise recordings (wav/flac/ogg/mp3, searched recursively) for background noise."""
    speed_prob: float = 0.0
    """Probability of speed perturbation (changes length and pitch, like Kaldi's)."""
    speed_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    """Speed factors drawn from uniformly; 1.1 is 10% faster and shorter."""
    gain_prob: float = 0.0
    """Probability of changing the volume."""
    gain_db: tuple[float, float] = (-6.0, 6.0)
    """Gain range in dB (min, max); each utterance draws one uniformly."""
    band_prob: float = 0.0
    """Probability of a narrowband channel, applied last (after the noise, as a recording would)."""
    band_rates: list[int] = field(default_factory=lambda: [8000])
    """Sample rates drawn from uniformly: the waveform is resampled to one and back, losing all above its half."""

    def __post_init__(self) -> None:
        for name in ("noise_prob", "speed_prob", "gain_prob", "band_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment: '{name}' must be a probability in [0, 1], got {value}")
        for name in ("snr_db", "gain_db", "impulse_density"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"augment: '{name}' must be (min, max) with min <= max, got {(low, high)}")
        low, high = self.impulse_density
        if not 0.0 < low <= high <= 1.0:
            raise ConfigError(f"augment: 'impulse_density' must lie in (0, 1], got {(low, high)}")
        unknown = [kind for kind in self.noise_types if kind not in NOISE_TYPES]
        if unknown:
            raise ConfigError(f"augment: unknown noise types {unknown}; known: {list(NOISE_TYPES)}")
        if self.noise_prob > 0 and not self.noise_types:
            raise ConfigError("augment: 'noise_prob' > 0 needs at least one entry in 'noise_types'")
        if any(f <= 0 for f in self.speed_factors):
            raise ConfigError(f"augment: 'speed_factors' must all be positive, got {self.speed_factors}")
        if self.speed_prob > 0 and not self.speed_factors:
            raise ConfigError("augment: 'speed_prob' > 0 needs at least one entry in 'speed_factors'")
        if any(r <= 0 for r in self.band_rates):
            raise ConfigError(f"augment: 'band_rates' must all be positive sample rates, got {self.band_rates}")
        if self.band_prob > 0 and not self.band_rates:
            raise ConfigError("augment: 'band_prob' > 0 needs at least one entry in 'band_rates'")

    @property
    def uses_background(self) -> bool:
        """Whether background noise from ``noise_dir`` can be drawn."""
        return self.noise_prob > 0 and "background" in self.noise_types


class NoiseFolderError(FileNotFoundError):
    """The background-noise folder is unset, missing, or holds no usable file."""


# ---------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------


def mix_at_snr(signal: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``signal + g * noise`` with ``g`` chosen so that ``10*log10(P(signal)/P(g*noise)) == snr_db``.

    ``signal`` and ``noise`` have the same shape. A silent signal or silent noise has
    no meaningful ratio, so the signal comes back unchanged.
    """
    if signal.shape != noise.shape:
        raise ValueError(f"signal {tuple(signal.shape)} and noise {tuple(noise.shape)} differ in shape")
    # float64 so the ratio is exact even for quiet float32 signals.
    s64, n64 = signal.double(), noise.double()
    p_signal = s64.pow(2).mean().item() if signal.numel() else 0.0
    p_noise = n64.pow(2).mean().item() if noise.numel() else 0.0
    if p_signal <= _SILENCE_POWER or p_noise <= _SILENCE_POWER:
        return signal
    gain = math.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (s64 + gain * n64).to(signal.dtype)


def white_noise(n: int, gen: torch.Generator) -> torch.Tensor:
    """Gaussian white noise ``(n,)`` with unit variance."""
    return torch.randn(n, generator=gen, dtype=torch.float32)


def impulse_noise(n: int, density: float, gen: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper noise ``(n,)``: ``round(density * n)`` spikes of +-1, zero elsewhere.

    The spike count is exact (at least one when ``density > 0``) rather than a
    Bernoulli draw per sample, so short clips still get noise at the asked density.
    """
    out = torch.zeros(n, dtype=torch.float32)
    if n == 0 or density <= 0:
        return out
    count = min(n, max(1, round(density * n)))
    positions = torch.randperm(n, generator=gen)[:count]
    signs = torch.randint(0, 2, (count,), generator=gen).to(torch.float32) * 2 - 1
    out[positions] = signs
    return out


def decaying_noise(n: int, gen: torch.Generator) -> torch.Tensor:
    """White noise ``(n,)`` whose amplitude falls linearly from 1 at the start to 0 at the end."""
    envelope = torch.linspace(1.0, 0.0, n, dtype=torch.float32)
    return white_noise(n, gen) * envelope


def speed_perturb(wave: torch.Tensor, factor: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Plays ``wave`` ``factor`` times faster: length ``~T / factor``, frequencies times ``factor``.

    As Kaldi and torchaudio do it: pretend the samples were recorded at
    ``sample_rate * factor`` and resample back to ``sample_rate``. The pretended rate
    is rounded to an integer because the sinc resampler works on integer rate ratios.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    pretended = round(sample_rate * factor)
    if pretended == sample_rate:
        return wave
    return resample(wave, pretended, sample_rate)


def band_limit(wave: torch.Tensor, rate: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``wave`` ``(T,)`` as heard through a channel sampled at ``rate``: nothing above ``rate / 2``.

    Resampled down to ``rate`` and back up with the sharp sinc filter (``resample(..., sharp=True)``).
    On white noise at 16 kHz -> 8 kHz it keeps the power below 3.6 kHz to 0.01%
    and leaves -53 dB above 4.2 kHz (torchaudio's default Hann filter: 95% and -25 dB). The length
    stays ``T`` (the round trip can add a sample, which is dropped).
    """
    if rate <= 0:
        raise ValueError(f"band rate must be positive, got {rate}")
    if rate >= sample_rate:
        return wave
    down = resample(wave, sample_rate, rate, sharp=True)  # (~T * rate / sample_rate,)
    return resample(down, rate, sample_rate, sharp=True)[: wave.numel()]  # (>= T,) -> (T,)


def apply_gain(wave: torch.Tensor, db: float) -> torch.Tensor:
    """``wave`` scaled by ``db`` decibels (amplitude factor ``10 ** (db / 20)``)."""
    return wave * (10.0 ** (db / 20.0))


def segment(noise: torch.Tensor, n: int, offset: float) -> torch.Tensor:
    """``n`` samples of ``noise`` ``(L,)`` starting at fraction ``offset`` in [0, 1) of the free range.

    A recording shorter than ``n`` is looped (it wraps around from a random start);
    a longer one yields a contiguous stretch that does not wrap.
    """
    length = noise.numel()
    if length >= n:
        start = min(int(offset * (length - n + 1)), length - n)
        return noise[start : start + n]
    start = min(int(offset * length), length - 1)
    index = (start + torch.arange(n)) % length  # (n,) positions into the looped recording
    return noise[index]


# ---------------------------------------------------------------------------
# Background-noise folder
# ---------------------------------------------------------------------------


class NoiseBank:
    """The usable recordings of a noise folder, scanned on first use and decoded on demand.

    Files are listed in sorted order and checked from their headers once, so the list
    (and therefore which file a given random draw picks) is the same in every worker
    and after a resume. Decoded files are kept in a bounded cache because large noise
    corpora do not fit in every worker's memory.
    """

    def __init__(
        self, folder: str | Path | None, sample_rate: int = SAMPLE_RATE, cache_samples: int = 16_000 * 600
    ) -> None:
        if folder is None:
            raise NoiseFolderError("background noise is enabled but 'noise_dir' is not set")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise NoiseFolderError(f"noise folder {self.folder} does not exist or is not a folder")
        self.sample_rate = sample_rate
        self.cache_samples = cache_samples
        self.skipped = 0  # files that could not be read, at the scan or when decoding
        self._files: list[Path] | None = None
        self._bad: set[int] = set()
        self._cache: dict[int, torch.Tensor] = {}
        self._cached = 0

    @property
    def files(self) -> list[Path]:
        """The usable recordings; scans the folder on first access."""
        if self._files is None:
            self._files = self._scan()
        return self._files

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` samples ``(n,)`` from a random stretch of a random recording."""
        files = self.files
        # Both draws happen before any decoding, so the generator advances the same
        # way whichever file is picked or fails.
        choice = int(torch.randint(len(files), (1,), generator=gen).item())
        offset = torch.rand(1, generator=gen).item()
        return segment(self._load_from(choice), n, offset)

    def _scan(self) -> list[Path]:
        candidates = sorted(
            p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in NOISE_SUFFIXES
        )
        usable, failures = [], []
        for path in candidates:
            try:
                frames, _, _ = header(path)
            except AudioError as err:
                failures.append(err)
                continue
            if frames == 0:
                failures.append(AudioError(path, "zero length"))
                continue
            usable.append(path)
        self.skipped += len(failures)
        if failures:
            warnings.warn(
                f"noise folder {self.folder}: skipped {len(failures)} of {len(candidates)} files "
                f"that cannot be read (first: {failures[0]})",
                stacklevel=3,
            )
        if not usable:
            raise NoiseFolderError(
                f"noise folder {self.folder} has no usable noise file "
                f"({len(candidates)} with suffix {'/'.join(NOISE_SUFFIXES)}, {len(failures)} unreadable)"
            )
        return usable

    def _load_from(self, choice: int) -> torch.Tensor:
        # A file that passed the header check but fails to decode is skipped for the
        # next one in order: the fallback depends only on the draw, not on history.
        files = self.files
        for step in range(len(files)):
            index = (choice + step) % len(files)
            if index in self._bad:
                continue
            try:
                return self._load(index)
            except AudioError as err:
                self._bad.add(index)
                self.skipped += 1
                warnings.warn(f"noise folder {self.folder}: skipping unreadable file ({err})", stacklevel=4)
        raise NoiseFolderError(f"noise folder {self.folder} has no noise file that can be decoded")

    def _load(self, index: int) -> torch.Tensor:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        wave = load_audio(self.files[index], sample_rate=self.sample_rate).to(torch.float32)
        self._remember(index, wave)
        return wave

    def _remember(self, index: int, wave: torch.Tensor) -> None:
        # Evict oldest first until the new file fits; a file larger than the whole
        # budget is used once and not kept.
        if wave.numel() > self.cache_samples:
            return
        while self._cache and self._cached + wave.numel() > self.cache_samples:
            old = self._cache.pop(next(iter(self._cache)))
            self._cached -= old.numel()
        self._cache[index] = wave
        self._cached += wave.numel()

    def __getstate__(self) -> dict[str, Any]:
        # Data-loader workers receive a pickled copy: send the file list, not the cache.
        state = self.__dict__.copy()
        state["_cache"], state["_cached"] = {}, 0
        return state


# ---------------------------------------------------------------------------
# The augmenter
# ---------------------------------------------------------------------------


class Augmenter:
    """Applies an :class:`AugmentConfig` to one waveform: speed, then gain, then noise, then the band.

    Randomness comes only from the generator passed to each call, so the same
    generator state gives the same output. The noise folder is checked at
    construction and scanned on first use (call :meth:`load_noise` to fail early).
    """

    def __init__(self, cfg: AugmentConfig, sample_rate: int = SAMPLE_RATE) -> None:
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.noise_bank = NoiseBank(cfg.noise_dir, sample_rate) if cfg.uses_background else None

    @property
    def enabled(self) -> bool:
        """False when every probability is 0: the augmenter is then the identity."""
        cfg = self.cfg
        return cfg.noise_prob > 0 or cfg.speed_prob > 0 or cfg.gain_prob > 0 or cfg.band_prob > 0

    def longest(self, samples: int) -> int:
        """The most samples augmenting a ``samples``-long wave can give (the slowest speed factor's
        length: ``ceil(T * rate / round(rate * f))``, as :func:`speed_perturb` resamples)."""
        cfg = self.cfg
        if cfg.speed_prob <= 0:
            return samples
        slowest = min(cfg.speed_factors)
        return max(samples, -(-samples * self.sample_rate // round(self.sample_rate * slowest)))

    def load_noise(self) -> int:
        """Scans the noise folder now (if background noise is used); returns the usable file count."""
        return len(self.noise_bank.files) if self.noise_bank is not None else 0

    def __call__(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augments ``wave`` ``(T,)``; returns float32 ``(T',)`` (``T' != T`` after speed perturbation)."""
        if wave.dim() != 1:
            raise ValueError(f"expected a mono waveform (T,), got shape {tuple(wave.shape)}")
        wave = wave.to(torch.float32)
        if not self.enabled or wave.numel() == 0:
            return wave
        cfg = self.cfg
        if _coin(gen, cfg.speed_prob):
            factor = cfg.speed_factors[_index(gen, len(cfg.speed_factors))]
            wave = speed_perturb(wave, factor, self.sample_rate)
        if _coin(gen, cfg.gain_prob):
            wave = apply_gain(wave, _uniform(gen, *cfg.gain_db))
        if _coin(gen, cfg.noise_prob):
            kind = cfg.noise_types[_index(gen, len(cfg.noise_types))]
            snr_db = _uniform(gen, *cfg.snr_db)
            wave = mix_at_snr(wave, self.noise(kind, wave.numel(), gen), snr_db)
        if _coin(gen, cfg.band_prob):  # last: its draws leave the other augmentations' stream as it was
            wave = band_limit(wave, cfg.band_rates[_index(gen, len(cfg.band_rates))], self.sample_rate)
        return wave

    def noise(self, kind: str, n: int, gen: torch.Generator) -> torch.Tensor:
        """Unscaled noise ``(n,)`` of one kind (``mix_at_snr`` sets its level)."""
        if kind == "white":
            return white_noise(n, gen)
        if kind == "impulse":
            return impulse_noise(n, _uniform(gen, *self.cfg.impulse_density), gen)
        if kind == "decaying":
            return decaying_noise(n, gen)
        if kind == "background":
            if self.noise_bank is None:  # only when called directly with noise_prob == 0
                self.noise_bank = NoiseBank(self.cfg.noise_dir, self.sample_rate)
            return self.noise_bank.draw(n, gen)
        raise ValueError(f"unknown noise type {kind!r}; known: {list(NOISE_TYPES)}")


def _coin(gen: torch.Generator, prob: float) -> bool:
    # Probability 0 draws nothing, so turning one augmentation off leaves the random
    # stream of the others (and a disabled augmenter's generator) untouched.
    if prob <= 0:
        return False
    return torch.rand(1, generator=gen).item() < prob


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand(1, generator=gen).item()


def _index(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (1,), generator=gen).item())
