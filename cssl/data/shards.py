"""Sharded corpora in WebDataset's tar layout, with a small index.

A shard ``shard-000123.tar`` holds, per utterance, two members sharing a key:
``KEY.<ext>`` (the source audio file's bytes as they are: FLAC stays FLAC) and ``KEY.json``
(``text``, ``speaker``, ``num_samples``, ``source``). That is WebDataset's layout: the
``webdataset`` library, and any tar reader, reads these shards. ``index.json`` lists the
shards with their entry count, seconds and bytes (not the entries: the index of a
2-million-utterance corpus stays a few kilobytes), which is all a streaming reader needs to
plan an epoch and to tell a missing shard before training starts.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cssl import SAMPLE_RATE
from cssl.data.manifest import Manifest
from cssl.utils.errors import DataError
from cssl.utils.io import atomic_write, atomic_write_text

INDEX = "index.json"
FORMAT = "cssl-shards/webdataset-1"


@dataclass(frozen=True)
class ShardInfo:
    """One shard of the index."""

    name: str
    """File name, relative to the index."""
    entries: int
    """Utterances in it."""
    seconds: float
    """Audio in it."""
    bytes: int
    """Size of the tar file."""


@dataclass(frozen=True)
class ShardIndex:
    """A sharded corpus: its folder and shards."""

    root: Path
    """Folder of the index and the shards."""
    shards: tuple[ShardInfo, ...]
    """In writing order."""
    labeled: bool
    """Whether every entry has a transcript."""

    @property
    def entries(self) -> int:
        return sum(s.entries for s in self.shards)

    @property
    def hours(self) -> float:
        return sum(s.seconds for s in self.shards) / 3600

    def path(self, shard: ShardInfo) -> Path:
        return self.root / shard.name

    def check(self) -> None:
        """Every shard is there: a missing one is an error before training starts, not hours into it."""
        missing = [s.name for s in self.shards if not self.path(s).is_file()]
        if missing:
            raise DataError(f"{self.root / INDEX}: {len(missing)} of {len(self.shards)} shards are missing "
                            f"(first: {missing[0]}); restore them or rewrite the shards with cssl data shard")


def write_shards(manifest: Manifest, out: str | Path, shard_hours: float = 1.0) -> ShardIndex:
    """Writes ``manifest`` as shards of about ``shard_hours`` of audio each, then the index."""
    if shard_hours <= 0:
        raise ValueError(f"shard_hours must be positive, got {shard_hours}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[ShardInfo] = []
    batch: list[int] = []
    seconds = 0.0
    for i, entry in enumerate(manifest):
        batch.append(i)
        seconds += entry.duration
        if seconds >= shard_hours * 3600:
            shards.append(_write_shard(manifest, batch, out / f"shard-{len(shards):06d}.tar"))
            batch, seconds = [], 0.0
    if batch:
        shards.append(_write_shard(manifest, batch, out / f"shard-{len(shards):06d}.tar"))
    index = ShardIndex(out, tuple(shards), manifest.labeled)
    atomic_write_text(out / INDEX, json.dumps({"format": FORMAT, "labeled": manifest.labeled,
                                               "shards": [asdict(s) for s in shards]}) + "\n")
    return index


def is_sharded(path: str | Path) -> bool:
    """Whether ``path`` names a sharded corpus (its folder or its ``index.json``)."""
    path = Path(path)
    return (path / INDEX).is_file() or (path.name == INDEX and path.is_file())


def read_index(path: str | Path) -> ShardIndex:
    """The index of a sharded corpus (``path``: the folder or its ``index.json``)."""
    path = Path(path)
    file = path / INDEX if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{file}: not a readable shard index ({err}); write one with cssl data shard") from err
    if data.get("format") != FORMAT:
        raise DataError(f"{file}: format {data.get('format')!r}, expected {FORMAT!r}")
    try:
        return ShardIndex(file.parent, tuple(ShardInfo(**s) for s in data["shards"]), bool(data["labeled"]))
    except (KeyError, TypeError) as err:
        raise DataError(f"{file}: an incomplete shard index ({type(err).__name__}: {err}; it needs 'labeled' and "
                        "'shards' with name, entries, seconds and bytes each); write it again with cssl data shard") from None


def _write_shard(manifest: Manifest, indices: list[int], path: Path) -> ShardInfo:
    seconds = 0.0

    def write(tmp: Path) -> None:
        nonlocal seconds
        with tarfile.open(tmp, "w") as tar:
            for i in indices:
                entry = manifest[i]
                source = manifest.audio_path(entry)
                key = f"{i:09d}"
                meta = {"text": entry.text, "speaker": entry.speaker, "num_samples": entry.num_samples,
                        "source": entry.path}
                _add(tar, f"{key}{source.suffix.lower() or '.wav'}", source.read_bytes())
                _add(tar, f"{key}.json", json.dumps(meta).encode("utf-8"))
                seconds += entry.num_samples / SAMPLE_RATE

    atomic_write(path, write)
    return ShardInfo(path.name, len(indices), round(seconds, 3), path.stat().st_size)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
