"""Manifests: the list of utterances a stage reads, in the formats users already have.

Two on-disk formats, chosen by the file extension:

* fairseq ``.tsv``: the first line is the root folder, then one
  ``relative/path<TAB>num_samples`` line per utterance. Transcripts, when present,
  sit beside it in parallel files with the same stem: ``.wrd`` (one line of words per
  utterance) and ``.ltr`` (letters with ``|`` after each word). ``.wrd`` wins when both
  exist. ``num_samples`` is the length at 16 kHz (what fairseq assumes).
* NeMo JSON lines (``.jsonl`` or ``.json``): one object per line with
  ``audio_filepath`` (absolute, or relative to the manifest's folder), ``duration``
  in seconds and ``text``; ``speaker`` is read and written when present.

Malformed input stops with :class:`ManifestError` naming the file and line: a manifest
is written by a tool, and a broken one should be fixed, not half-read.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from cssl import SAMPLE_RATE
from cssl.data.entries import Entry, Manifest, ManifestError
from cssl.data.lhotse_cuts import is_cuts_file, read_cuts
from cssl.text.normalize import from_letters, to_letters
from cssl.utils.io import atomic_write_lines

TSV_SUFFIX = ".tsv"
JSON_SUFFIXES = (".jsonl", ".json")


def read_manifest(path: str | Path) -> Manifest:
    """Reads a ``.tsv`` (with its ``.wrd``/``.ltr``), a JSON-lines manifest, or a lhotse CutSet (``.jsonl.gz``)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    if is_cuts_file(path):
        return read_cuts(path)
    if path.suffix == TSV_SUFFIX:
        return _read_tsv(path)
    if path.suffix in JSON_SUFFIXES:
        return _read_jsonl(path)
    raise ManifestError(f"{path}: unknown manifest format; use .tsv (fairseq), .jsonl (NeMo) or .jsonl.gz (lhotse cuts)")


def write_manifest(manifest: Manifest, path: str | Path) -> None:
    """Writes in the format of ``path``'s extension, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == TSV_SUFFIX:
        _write_tsv(manifest, path)
    elif path.suffix in JSON_SUFFIXES:
        _write_jsonl(manifest, path)
    else:
        raise ManifestError(f"{path}: unknown manifest format; use .tsv (fairseq) or .jsonl (NeMo)")


def _read_tsv(path: Path) -> Manifest:
    lines = _read_lines(path)
    if not lines:
        raise ManifestError(f"{path}:1: empty manifest; the first line must be the root folder")
    root = Path(lines[0].strip())
    if not root.is_dir():
        raise ManifestError(f"{path}:1: root folder {str(root)!r} does not exist; fix the first line")
    entries = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2:
            raise ManifestError(f"{path}:{lineno}: expected 'path<TAB>num_samples', got {line!r}")
        try:
            num_samples = int(parts[1])
        except ValueError:
            raise ManifestError(f"{path}:{lineno}: num_samples {parts[1]!r} is not an integer") from None
        if num_samples < 0:
            raise ManifestError(f"{path}:{lineno}: num_samples {num_samples} is negative")
        entries.append(Entry(parts[0], num_samples))
    texts = _read_tsv_labels(path, len(entries))
    if texts is not None:
        entries = [replace(e, text=t) for e, t in zip(entries, texts)]
    return Manifest(root, entries)


def _read_tsv_labels(path: Path, count: int) -> list[str] | None:
    for suffix, convert in ((".wrd", lambda s: s.strip()), (".ltr", from_letters)):
        label_path = path.with_suffix(suffix)
        if not label_path.is_file():
            continue
        labels = _read_lines(label_path)
        if len(labels) != count:
            raise ManifestError(
                f"{label_path}: {len(labels)} label lines for {count} audio lines in {path}; "
                "the files must be parallel (one label line per audio line)"
            )
        return [convert(line) for line in labels]
    return None


def _read_jsonl(path: Path) -> Manifest:
    entries = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict) or "audio_filepath" not in obj or "duration" not in obj:
            raise ManifestError(f"{path}:{lineno}: each line needs 'audio_filepath' and 'duration'")
        duration = obj["duration"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            raise ManifestError(f"{path}:{lineno}: 'duration' must be a non-negative number, got {duration!r}")
        text = obj.get("text")
        if text is not None and not isinstance(text, str):
            raise ManifestError(f"{path}:{lineno}: 'text' must be a string, got {text!r}")
        speaker = obj.get("speaker")
        entries.append(
            Entry(
                str(obj["audio_filepath"]),
                round(duration * SAMPLE_RATE),
                text,
                None if speaker is None else str(speaker),
            )
        )
    return Manifest(path.parent.resolve(), entries)


def _write_tsv(manifest: Manifest, path: Path) -> None:
    lines = [str(Path(manifest.root).resolve())]
    lines += [f"{e.path}\t{e.num_samples}" for e in manifest.entries]
    atomic_write_lines(path, lines)
    if manifest.labeled:
        atomic_write_lines(path.with_suffix(".wrd"), [e.text or "" for e in manifest.entries])
        atomic_write_lines(path.with_suffix(".ltr"), [to_letters(e.text or "") for e in manifest.entries])


def _write_jsonl(manifest: Manifest, path: Path) -> None:
    base = path.parent.resolve()
    lines = []
    for e in manifest.entries:
        audio = manifest.audio_path(e).resolve()
        rel = os.path.relpath(audio, base)
        obj: dict[str, object] = {
            "audio_filepath": rel if not rel.startswith("..") else str(audio),
            "duration": round(e.num_samples / SAMPLE_RATE, 6),
        }
        if e.text is not None:
            obj["text"] = e.text
        if e.speaker is not None:
            obj["speaker"] = e.speaker
        lines.append(json.dumps(obj, ensure_ascii=False))
    atomic_write_lines(path, lines)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
