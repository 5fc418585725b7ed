"""Reading audio: decode with soundfile, downmix to mono, resample to 16 kHz, check, normalise.

Every way a file can be unusable raises :class:`AudioError` with a short reason
(``missing``, ``empty file``, ``cannot decode``, ``zero length``, ``non-finite
samples``...), so a data loader can skip the file, count it and report it.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from cssl import SAMPLE_RATE
from cssl.data.entries import Entry, Manifest
from cssl.data.policy import LENGTH_TOLERANCE, MAX_CHANNELS, MIN_RATE
from cssl.data.rejects import Rejects
from cssl.utils.errors import UserError
from cssl.utils.progress import ProgressLine


class AudioError(UserError):
    """A file that cannot be used as audio; ``reason`` is short and stable for counting."""

    def __init__(self, path: str | Path, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self) -> tuple:
        # Travels between processes (scan workers, data-loader workers) intact.
        return (AudioError, (self.path, self.reason, self.detail))


def header(path: str | Path) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` from the header, without decoding."""
    path = Path(path)
    _check_file(path)
    _check_riff_size(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, "cannot decode", str(err)) from None
    return info.frames, info.samplerate, info.channels


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decodes a whole file: float32 ``(frames, channels)`` and its sample rate. A file that decodes to
    fewer or more frames than its header announces (a cut-off download) is ``truncated``: the manifest
    builder, the training loaders, evaluation and transcription all read through here."""
    path = Path(path)
    _check_file(path)
    _check_riff_size(path)
    return decode(str(path), path)


def decode(source, name: str | Path) -> tuple[np.ndarray, int]:
    """Decodes a file name or file object (``name`` in errors): float32 ``(frames, channels)`` and its rate;
    ``truncated`` when the decoded frames differ from the header's count."""
    try:
        with sf.SoundFile(source) as f:
            frames, rate = f.frames, f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        detail = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", str(name), str(err))  # soundfile's repr
        raise AudioError(name, "cannot decode", detail) from None
    if len(data) != frames:
        raise AudioError(name, "truncated", f"header says {frames} frames, decoded {len(data)}")
    return data, rate


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    normalize: bool = False,
    expected_rate: int | None = None,
    max_channels: int | None = MAX_CHANNELS,
    min_rate: int | None = MIN_RATE,
    expected_samples: int | None = None,
) -> torch.Tensor:
    """Loads a file as a mono float32 tensor ``(T,)`` at ``sample_rate``.

    ``normalize`` scales to zero mean and unit variance (what wav2vec 2.0 LARGE
    expects). ``expected_rate``, ``min_rate`` and ``max_channels`` turn an unexpected
    rate or channel count into an :class:`AudioError` instead of a silent resample or
    downmix; the defaults are the policy ``cssl data manifest`` applies, so a file the
    manifest builder rejects is rejected everywhere. ``expected_samples`` (a manifest's
    count at 16 kHz) must match the decoded length within :data:`LENGTH_TOLERANCE`, or
    the file is rejected as ``length mismatch``: a stale manifest would otherwise steer
    length filters and batching with wrong numbers.
    """
    data, rate = read_audio(path)
    return _checked_wave(data, rate, path, sample_rate, normalize, expected_rate, max_channels, min_rate,
                         expected_samples)


def load_audio_bytes(payload: bytes, name: str, sample_rate: int = SAMPLE_RATE, normalize: bool = False,
                     max_channels: int | None = MAX_CHANNELS, min_rate: int | None = MIN_RATE) -> torch.Tensor:
    """:func:`load_audio` of a file's bytes (an upload), ``name`` in errors; empty bytes are ``zero length``."""
    if not payload:
        raise AudioError(name, "zero length", "no bytes")
    data, rate = decode(io.BytesIO(payload), name)
    return _checked_wave(data, rate, name, sample_rate, normalize, None, max_channels, min_rate, None)


def _checked_wave(data: np.ndarray, rate: int, path: str | Path, sample_rate: int, normalize: bool,
                  expected_rate: int | None, max_channels: int | None, min_rate: int | None,
                  expected_samples: int | None) -> torch.Tensor:
    """The decoded ``data`` (frames, channels) under the loading policy, as a mono tensor at ``sample_rate``."""
    if expected_rate is not None and rate != expected_rate:
        raise AudioError(path, "unexpected sample rate", f"{rate} Hz, expected {expected_rate} Hz")
    if min_rate is not None and rate < min_rate:
        raise AudioError(path, "unexpected sample rate", f"{rate} Hz is below {min_rate} Hz")
    if max_channels is not None and data.shape[1] > max_channels:
        raise AudioError(path, "unexpected channel count", f"{data.shape[1]} channels, at most {max_channels}")
    if expected_samples is not None:
        check_length(path, expected_samples, len(data), rate)
    wave = torch.from_numpy(data).mean(dim=1)  # (frames, channels) -> (frames,)
    return prepare(wave, rate, path, sample_rate=sample_rate, normalize=normalize)


def readable_waves(manifest: Manifest, rejects: Rejects, what: str, normalize: bool = False,
                   progress: bool = True) -> Iterator[tuple[Entry, torch.Tensor]]:
    """Each readable utterance of ``manifest`` with its 16 kHz waveform, under a progress line named
    ``what``; an unreadable file is skipped and recorded in ``rejects``."""
    meter = ProgressLine(what, len(manifest), enabled=progress)
    for done, entry in enumerate(manifest, 1):
        path = manifest.audio_path(entry)
        try:
            wave = load_audio(path, normalize=normalize)
        except AudioError as err:
            rejects.add(path, err.reason, err.detail)
        else:
            yield entry, wave
        meter.update(done)
    meter.close()


def check_length(path: str | Path, claimed: int, frames: int, rate: int) -> None:
    """Raises ``length mismatch`` when ``claimed`` (samples at 16 kHz) is far from ``frames`` at ``rate``.

    A count of the file's own frames is accepted too (fairseq's manifest tool writes
    those for audio that is not at 16 kHz).
    """
    actual = -(-frames * SAMPLE_RATE // rate)  # at 16 kHz, torchaudio's ceil rule
    tolerance = max(160, LENGTH_TOLERANCE * actual)
    if abs(claimed - actual) > tolerance and claimed != frames:
        raise AudioError(path, "length mismatch",
                         f"the manifest says {claimed} samples ({claimed / SAMPLE_RATE:.2f} s at 16 kHz), the audio "
                         f"has {actual} ({actual / SAMPLE_RATE:.2f} s); rebuild the manifest (cssl data manifest)")


def prepare(
    wave: torch.Tensor,
    rate: int,
    name: str | Path = "<array>",
    sample_rate: int = SAMPLE_RATE,
    normalize: bool = False,
) -> torch.Tensor:
    """Checks a mono waveform, resamples it to ``sample_rate`` and optionally normalises it."""
    if wave.numel() == 0:
        raise AudioError(name, "zero length")
    if not torch.isfinite(wave).all():
        raise AudioError(name, "non-finite samples", "NaN or inf in the signal")
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    if normalize:
        wave = normalize_wave(wave)
    return wave.contiguous()


SHARP_FILTER = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596,
                "resampling_method": "sinc_interp_kaiser", "beta": 14.769656459379492}
"""librosa's ``kaiser_best`` as torchaudio documents it: a flatter pass band and about -53 dB left
above the cut (the default Hann kernel: about -25 dB), at about 6x the cost (16 kHz to 8 kHz and
back: 2.9 ms per second of audio on one core against 0.5)."""


def resample(wave: torch.Tensor, orig_rate: int, new_rate: int, sharp: bool = False) -> torch.Tensor:
    """Band-limited sinc resampling (torchaudio's Hann-windowed kernel; ``sharp``: :data:`SHARP_FILTER`)."""
    if orig_rate == new_rate:
        return wave
    return AF.resample(wave, orig_rate, new_rate, **(SHARP_FILTER if sharp else {}))


def normalize_wave(wave: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance over the last dimension (as HF's feature extractor: eps 1e-7)."""
    mean = wave.mean(dim=-1, keepdim=True)
    var = wave.var(dim=-1, unbiased=False, keepdim=True)
    return (wave - mean) / torch.sqrt(var + eps)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "missing")
    if not path.is_file():
        raise AudioError(path, "not a file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file")


def _check_riff_size(path: Path) -> None:
    """Flags a WAV whose ``data`` chunk is shorter than its header says.

    libsndfile quietly decodes what is there, so a copy cut short would otherwise
    pass as a shorter recording. Streaming writers put 0 or 0xFFFFFFFF in the size
    field when they cannot seek back; those sizes are taken as unknown.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return
        endian = "<" if head[:4] == b"RIFF" else ">"
        size = path.stat().st_size
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if chunk_id == b"data":
                available = size - fh.tell()
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise AudioError(path, "truncated", f"data chunk declares {chunk_size} bytes, file holds {available}")
                return
            fh.seek(chunk_size + (chunk_size & 1), 1)
