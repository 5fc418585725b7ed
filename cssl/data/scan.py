"""Builds a manifest by scanning a folder tree of audio files in parallel.

Each file is opened and (by default) fully decoded in a worker process: files that are
missing, empty, truncated, corrupt, not audio, at an unusable rate or channel count, or
that hold NaN/inf samples or no samples at all are skipped, and each skip is written to
the rejects file with its reason. Transcripts come from LibriSpeech's ``*.trans.txt``
files (``ID words...`` per line), from a ``.txt`` file beside each audio file, or from
the name of the folder holding the file (``yes/0a7c_nohash_0.wav`` says "yes": keyword
corpora). ``include`` / ``exclude`` globs select files by their path relative to the
scanned folder, and a regular expression with a ``speaker`` group takes each file's
speaker from its name (written into ``.jsonl`` manifests, for speaker-disjoint splits).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cssl import SAMPLE_RATE
from cssl.data.audio import AudioError, header, read_audio
from cssl.data.manifest import Entry, Manifest
from cssl.data.policy import AUDIO_EXTENSIONS, MAX_CHANNELS, MIN_RATE, SCAN_WORKERS
from cssl.data.rejects import Rejects
from cssl.text.normalize import normalize_text
from cssl.utils.errors import UsageError

LabelSource = Literal["none", "librispeech", "sidecar", "folder"]


@dataclass(frozen=True)
class ScanConfig:
    """How a folder is scanned into a manifest."""

    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    """File name endings taken as audio (case-insensitive)."""
    labels: LabelSource = "none"
    """Where transcripts come from: none, LibriSpeech ``*.trans.txt``, ``stem.txt`` beside each file, or the parent folder's name."""
    include: tuple[str, ...] = ()
    """Globs on the path relative to the folder (``yes/*``); when given, only matching files are listed."""
    exclude: tuple[str, ...] = ()
    """Globs of files to leave out (``_silence_/*``, ``*/_unknown_/*``)."""
    speaker_pattern: str | None = None
    """Regular expression searched in the file name; its ``speaker`` group names the speaker."""
    decode: bool = True
    """Decode every file fully (finds truncation and NaN); False reads headers only (fast)."""
    min_rate: int = MIN_RATE
    """Files sampled below this rate (Hz) are rejected: too little bandwidth for speech."""
    max_channels: int = MAX_CHANNELS
    """Files with more channels are rejected rather than silently downmixed."""
    workers: int = SCAN_WORKERS
    """Worker processes that open files in parallel."""


def scan_folder(folder: str | Path, cfg: ScanConfig = ScanConfig()) -> tuple[Manifest, Rejects]:
    """Scans ``folder`` recursively; returns the manifest (paths relative to it) and the rejects."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found; give the folder that holds the audio files")
    rejects = Rejects()
    speaker = _speaker_regex(cfg.speaker_pattern)
    files = [f for f in sorted(_audio_files(folder, cfg.extensions, rejects))
             if _selected(f.relative_to(folder).as_posix(), cfg.include, cfg.exclude)]
    speakers = _speakers(files, speaker, rejects) if speaker else {}
    files = [f for f in files if not speaker or f in speakers]
    texts = _read_labels(folder, files, cfg.labels, rejects)
    jobs = [(str(f), cfg) for f in files]
    entries = []
    with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
        chunk = max(1, len(jobs) // (cfg.workers * 16))
        for path, result in zip(files, pool.map(_check_file, jobs, chunksize=chunk)):
            if isinstance(result, AudioError):
                rejects.add(path, result.reason, result.detail)
                continue
            rel = path.relative_to(folder).as_posix()
            if cfg.labels == "none":
                entries.append(Entry(rel, result, None, speakers.get(path)))
            elif path in texts:
                entries.append(Entry(rel, result, texts[path], speakers.get(path)))
    return Manifest(folder, entries), rejects


def resampled_length(frames: int, rate: int, new_rate: int = SAMPLE_RATE) -> int:
    """Samples after resampling ``frames`` from ``rate`` to ``new_rate`` (torchaudio's ceil rule)."""
    return -(-frames * new_rate // rate)


def _check_file(job: tuple[str, ScanConfig]) -> int | AudioError:
    """Worker: the file's length at 16 kHz, or the error that disqualifies it."""
    path, cfg = job
    try:
        frames, rate, channels = header(path)
        if rate < cfg.min_rate:
            raise AudioError(path, "unexpected sample rate", f"{rate} Hz is below {cfg.min_rate} Hz")
        if channels > cfg.max_channels:
            raise AudioError(path, "unexpected channel count", f"{channels} channels, at most {cfg.max_channels}")
        if cfg.decode:
            data, _ = read_audio(path)  # refuses a truncated file
            if not np.isfinite(data).all():
                raise AudioError(path, "non-finite samples", "NaN or inf in the signal")
        if frames == 0:
            raise AudioError(path, "zero length")
        return resampled_length(frames, rate)
    except AudioError as err:
        return err


def _audio_files(folder: Path, extensions: tuple[str, ...], rejects: Rejects) -> Iterator[Path]:
    """Audio files under ``folder``, following symbolic links once each.

    A link back to a folder on the current path (a loop) or to a folder already scanned is
    not entered, and a file reached a second time through links is not listed again; each
    is recorded in ``rejects``.
    """
    wanted = tuple(e.lower() for e in extensions)
    visited = {os.path.realpath(folder)}
    files_seen: dict[str, Path] = {}
    for dirpath, dirnames, names in os.walk(folder, followlinks=True):
        here = os.path.realpath(dirpath)
        for name in sorted(dirnames):
            link = Path(dirpath) / name
            real = os.path.realpath(link)
            if real in visited:
                dirnames.remove(name)
                loop = here == real or here.startswith(real + os.sep)
                rejects.add(link, "symlink loop" if loop else "folder already scanned",
                            f"links to {real}, {'a folder containing it' if loop else 'scanned through another path'}; "
                            "not entered again")
            else:
                visited.add(real)
        for name in sorted(names):
            if not name.lower().endswith(wanted) or name.startswith("."):
                continue
            path = Path(dirpath) / name
            real = os.path.realpath(path)
            if real in files_seen:
                rejects.add(path, "duplicate file", f"the same file as {files_seen[real]} (through a link)")
                continue
            files_seen[real] = path
            yield path


def _selected(rel: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    """Whether a relative path passes the include globs (any, when given) and no exclude glob."""
    if include and not any(fnmatch.fnmatchcase(rel, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(rel, g) for g in exclude)


def _speaker_regex(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise UsageError(f"--speaker-pattern {pattern!r}: not a regular expression ({err})") from None
    if "speaker" not in regex.groupindex:
        raise UsageError(f"--speaker-pattern {pattern!r}: needs a group named speaker, e.g. '^(?P<speaker>[^_]+)_'")
    return regex


def _speakers(files: list[Path], regex: re.Pattern[str], rejects: Rejects) -> dict[Path, str]:
    """The speaker of each file whose name matches; the others are rejected."""
    out = {}
    for path in files:
        m = regex.search(path.name)
        if m and m.group("speaker"):
            out[path] = m.group("speaker")
        else:
            rejects.add(path, "no speaker", f"the file name does not match --speaker-pattern {regex.pattern!r}")
    return out


def _read_labels(folder: Path, files: list[Path], source: LabelSource, rejects: Rejects) -> dict[Path, str]:
    """Transcripts per audio file; audio without one, and transcripts without audio, are rejected."""
    if source == "none":
        return {}
    if source == "folder":
        return _folder_labels(files, rejects)
    raw = _librispeech_labels(folder, rejects) if source == "librispeech" else _sidecar_labels(files, rejects)
    texts = {}
    for path in files:
        key = (path.parent, path.stem) if source == "librispeech" else path
        if key not in raw:
            rejects.add(path, "no transcript", f"no {source} transcript found for {path.name}")
            continue
        text = raw.pop(key)
        if not normalize_text(text):
            rejects.add(path, "empty transcript", "the transcript has no letters or digits")
            continue
        texts[path] = text
    for key in raw:
        where = key[0] / key[1] if isinstance(key, tuple) else key
        rejects.add(where, "transcript without audio", "a transcript line names no audio file that was kept")
    return texts


def _folder_labels(files: list[Path], rejects: Rejects) -> dict[Path, str]:
    """The parent folder's name as the transcript (underscores read as spaces)."""
    texts = {}
    for path in files:
        text = path.parent.name.replace("_", " ")
        if normalize_text(text):
            texts[path] = text
        else:
            rejects.add(path, "empty transcript", f"the folder name {path.parent.name!r} has no letters or digits")
    return texts


def _librispeech_labels(folder: Path, rejects: Rejects) -> dict[object, str]:
    labels: dict[object, str] = {}
    for trans in sorted(folder.rglob("*.trans.txt")):
        lines = _read_text_lines(trans, rejects)
        for line in lines or []:
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            labels[(trans.parent, utt_id)] = text.strip()
    return labels


def _sidecar_labels(files: list[Path], rejects: Rejects) -> dict[object, str]:
    labels: dict[object, str] = {}
    for path in files:
        txt = path.with_suffix(".txt")
        if txt.is_file():
            lines = _read_text_lines(txt, rejects)
            if lines is not None:
                labels[path] = " ".join(line.strip() for line in lines)
    return labels


def _read_text_lines(path: Path, rejects: Rejects) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        rejects.add(path, "transcript not UTF-8", f"invalid byte at offset {err.start}; re-save as UTF-8")
        return None
