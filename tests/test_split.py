"""Keyword-corpus manifests (labels from folders, globs, speakers from file names) and speaker-disjoint splits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cssl.data.manifest import Entry, Manifest, ManifestError, read_manifest
from cssl.data.scan import ScanConfig, scan_folder
from cssl.data.split import split_manifest
from tests.conftest import tone, write


def keyword_folder(root: Path) -> Path:
    """Speech Commands' layout: WORD/SPEAKER_nohash_N.wav, plus _silence_ and _unknown_ folders."""
    for word in ("yes", "no", "left"):
        for speaker in ("aa01", "bb02", "cc03", "dd04", "ee05"):
            write(root / word / f"{speaker}_nohash_0.wav", tone(0.6, 300))
    write(root / "_silence_" / "noise_0.wav", tone(0.6, 100))
    write(root / "_unknown_" / "ff06_nohash_0.wav", tone(0.6, 200))
    write(root / "yes" / "unnamed.wav", tone(0.6, 250))  # no speaker in the name
    return root


def test_folder_labels_globs_and_speakers(tmp_path: Path) -> None:
    root = keyword_folder(tmp_path / "sc")
    cfg = ScanConfig(labels="folder", exclude=("_silence_/*", "_unknown_/*"), workers=1,
                     speaker_pattern=r"^(?P<speaker>[^_]+)_")
    manifest, rejects = scan_folder(root, cfg)
    assert len(manifest) == 15
    assert {(e.path.split("/")[0], e.text) for e in manifest} == {("yes", "yes"), ("no", "no"), ("left", "left")}
    assert {e.speaker for e in manifest} == {"aa01", "bb02", "cc03", "dd04", "ee05"}
    assert rejects.counts() == {"no speaker": 1}
    only, _ = scan_folder(root, ScanConfig(labels="folder", include=("yes/*",), workers=1))
    assert {e.text for e in only} == {"yes"} and len(only) == 6
    with pytest.raises(ValueError, match="group named speaker"):
        scan_folder(root, ScanConfig(speaker_pattern="^[^_]+_", workers=1))


def test_speaker_split_is_disjoint_covering_and_near_the_shares() -> None:
    entries = [Entry(f"{s}_{i}.wav", 16000, "x", f"s{s}") for s in range(40) for i in range(5 + s % 3)]
    manifest = Manifest(Path("/"), entries)
    parts = split_manifest(manifest, dev=0.1, test=0.2, seed=3)
    speakers = {name: {e.speaker for e in part} for name, part in parts.items()}
    assert not (speakers["train"] & speakers["dev"] or speakers["train"] & speakers["test"]
                or speakers["dev"] & speakers["test"])
    assert sorted(e.path for part in parts.values() for e in part) == sorted(e.path for e in entries)
    n = len(entries)
    assert 0.2 * n <= len(parts["test"]) <= 0.2 * n + 7 and 0.1 * n <= len(parts["dev"]) <= 0.1 * n + 7
    assert parts == split_manifest(manifest, dev=0.1, test=0.2, seed=3)  # seeded
    assert parts["test"].entries != split_manifest(manifest, dev=0.1, test=0.2, seed=4)["test"].entries
    tiny = split_manifest(Manifest(Path("/"), entries[:12]), dev=0.4, test=0.5)  # 2 speakers: train keeps one
    assert len(tiny["train"]) > 0
    with pytest.raises(ManifestError, match="name no speaker"):
        split_manifest(Manifest(Path("/"), [Entry("a.wav", 1), Entry("b.wav", 1)]), 0.1, 0.2)


def test_cli_manifest_and_split(tmp_path: Path) -> None:
    root = keyword_folder(tmp_path / "sc")
    out = tmp_path / "sc.jsonl"
    run = lambda *a: subprocess.run([sys.executable, "-m", "cssl", "data", *a], capture_output=True, text=True)  # noqa: E731
    proc = run("manifest", str(root), str(out), "--labels", "folder", "--exclude", "_silence_/*", "_unknown_/*",
               "--speaker-pattern", r"^(?P<speaker>[^_]+)_", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text().splitlines()[0])["speaker"] == "aa01"
    proc = run("split", str(out), "--dev", "0.2", "--test", "0.2")
    assert proc.returncode == 0, proc.stderr
    parts = {name: read_manifest(tmp_path / f"sc.{name}.jsonl") for name in ("train", "dev", "test")}
    assert sum(len(p) for p in parts.values()) == 15 and all(len(p) == 3 for p in (parts["dev"], parts["test"]))
    proc = run("manifest", str(root), str(tmp_path / "x.tsv"), "--speaker-pattern", "(?P<speaker>.)")
    assert proc.returncode == 2 and "hold no speakers" in proc.stderr
