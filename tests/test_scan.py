from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf

from cssl.data.audio import load_audio
from cssl.data.manifest import read_manifest
from cssl.data.scan import ScanConfig, resampled_length, scan_folder
from tests.conftest import tone, write


def test_scan_skips_every_bad_file_with_its_reason(bad_folder: tuple[Path, dict[str, str]]) -> None:
    folder, expected = bad_folder
    manifest, rejects = scan_folder(folder, ScanConfig(workers=2))
    assert sorted(e.path for e in manifest) == ["good/a.wav", "good/b.flac"]
    got = {Path(r.path).relative_to(folder.resolve()).as_posix(): r.reason for r in rejects.items.values()}
    assert got == expected
    assert rejects.counts()["cannot decode"] == 3
    # lengths at 16 kHz equal what the loader actually produces
    for entry in manifest:
        assert entry.num_samples == load_audio(manifest.audio_path(entry)).numel()


def test_headers_only_scan_misses_content_errors(bad_folder: tuple[Path, dict[str, str]]) -> None:
    folder, _ = bad_folder
    manifest, _ = scan_folder(folder, ScanConfig(decode=False, workers=1))
    assert "nan.wav" in {e.path for e in manifest}


def test_resampled_length_matches_torchaudio() -> None:
    import torch
    import torchaudio.functional as AF

    for n, rate in [(8000, 8000), (12345, 22050), (1, 44100), (999, 11025)]:
        assert resampled_length(n, rate) == AF.resample(torch.zeros(n), rate, 16000).numel()


def _librispeech(root: Path) -> None:
    chapter = root / "19" / "198"
    for i, text in enumerate(["HELLO THERE", "GOOD MORNING", ""]):
        write(chapter / f"19-198-000{i}.flac", tone(0.5 + 0.1 * i))
    write(chapter / "19-198-0009.flac", tone(0.5))  # audio without a transcript line
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 HELLO THERE\n19-198-0001 GOOD MORNING\n19-198-0002 \n19-198-0005 NO AUDIO HERE\n"
    )
    other = root / "20" / "1"
    write(other / "20-1-0000.flac", tone(0.5))
    (other / "20-1.trans.txt").write_bytes(b"20-1-0000 CAF\xe9\n")  # latin-1, not UTF-8


def test_librispeech_labels_and_label_problems(tmp_path: Path) -> None:
    _librispeech(tmp_path)
    manifest, rejects = scan_folder(tmp_path, ScanConfig(labels="librispeech", workers=1))
    assert [(e.path, e.text) for e in manifest] == [
        ("19/198/19-198-0000.flac", "HELLO THERE"),
        ("19/198/19-198-0001.flac", "GOOD MORNING"),
    ]
    reasons = {Path(r.path).name: r.reason for r in rejects.items.values()}
    assert reasons["19-198-0002.flac"] == "empty transcript"
    assert reasons["19-198-0009.flac"] == "no transcript"
    assert reasons["19-198-0005"] == "transcript without audio"
    assert reasons["20-1.trans.txt"] == "transcript not UTF-8"
    assert reasons["20-1-0000.flac"] == "no transcript"


def test_sidecar_labels(tmp_path: Path) -> None:
    write(tmp_path / "x.wav", tone(0.3))
    (tmp_path / "x.txt").write_text("Some words.\n")
    manifest, rejects = scan_folder(tmp_path, ScanConfig(labels="sidecar", workers=1))
    assert manifest[0].text == "Some words." and len(rejects) == 0


def test_cli_writes_manifest_and_rejects(bad_folder: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    folder, expected = bad_folder
    out = tmp_path / "out" / "all.jsonl"
    proc = subprocess.run([sys.executable, "-m", "cssl", "data", "manifest", str(folder), str(out)],
                          capture_output=True, text=True, check=True)
    assert f"{len(expected)} skipped" in proc.stdout
    assert len(read_manifest(out)) == 2
    rows = (out.parent / "all.rejects.tsv").read_text().splitlines()
    assert len(rows) == len(expected) and all(len(r.split("\t")) == 3 for r in rows)
    assert sf.info(str(folder / "good" / "a.wav")).samplerate == 16000
    proc = subprocess.run([sys.executable, "-m", "cssl", "data", "manifest", str(tmp_path / "nope"), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "folder not found" in proc.stderr
