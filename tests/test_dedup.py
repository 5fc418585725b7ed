"""Duplicates: exact (same samples, any lossless container) and near (re-encoded, gain, trims, noise);
the leakage check against a test set; nothing silently empty."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cssl.cli import main as cssl
from cssl.data import dedup
from cssl.data.manifest import Entry, Manifest, read_manifest, write_manifest
from cssl.synth.corpus import synthesize_corpus


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[tuple[str, np.ndarray]]:
    """Twelve synthetic utterances with twelve different transcripts: ``(text, 16 kHz samples)``."""
    folder = tmp_path_factory.mktemp("speech")
    summary = synthesize_corpus(folder, num_utterances=60, seed=5, workers=1, vocab_size=200, progress=False)
    seen, out = set(), []
    for split in ("train", "dev", "test"):
        m = read_manifest(summary.manifest(split, ".jsonl"))
        for e in m:
            if e.text not in seen and e.duration > 1.0:
                seen.add(e.text)
                out.append((e.text, sf.read(m.audio_path(e), dtype="float32")[0]))
    assert len(out) >= 8
    return out[:12]


def changed(x: np.ndarray, seed: int) -> np.ndarray:
    """A re-upload: 0-100 ms trimmed at each end, gain x0.5-x2, noise at 1% of the RMS."""
    rng = np.random.default_rng(seed)
    start, end = rng.integers(0, 1600, size=2)
    y = x[start:len(x) - end] * 2 ** rng.uniform(-1, 1)
    return np.clip(y + rng.normal(0, 0.01 * np.sqrt((y**2).mean()), len(y)), -1, 1).astype(np.float32)


def test_the_frame_similarity_is_one_for_itself_and_finds_the_offset() -> None:
    frames = np.random.default_rng(0).normal(size=(200, dedup.N_MELS)).astype(np.float32)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    assert dedup.frame_similarity(frames, frames) == pytest.approx(1.0)
    assert dedup.frame_similarity(frames[7:], frames) == pytest.approx(1.0)  # b is a 7 frames later than a
    assert dedup.frame_similarity(frames, frames[7:]) == pytest.approx(1.0)
    other = np.random.default_rng(1).normal(size=(200, dedup.N_MELS)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    assert dedup.frame_similarity(frames, other) < 0.2  # random frames: about 1/sqrt(N_MELS) at best
    assert dedup.frame_similarity(frames[:20], frames[150:]) < 0.3  # no overlap of half: not aligned


def test_planted_copies_are_found_and_nothing_else(speech, tmp_path: Path) -> None:
    prints = [dedup.fingerprint(torch.from_numpy(x)) for _, x in speech]
    assert dedup.within(prints) == []  # different sentences: no duplicate
    copies = {}
    for n, (i, fmt) in enumerate([(0, ("OGG", "OPUS")), (3, ("MP3", "MPEG_LAYER_III")), (5, ("FLAC", "PCM_16"))]):
        path = tmp_path / f"copy{n}.{fmt[0].lower()}"
        sf.write(path, changed(speech[i][1], n), 16000, format=fmt[0], subtype=fmt[1])
        copies[len(prints)] = i
        prints.append(dedup.fingerprint(torch.from_numpy(sf.read(path, dtype="float32")[0])))
    found = {m.index: (m.twin, m.kind) for m in dedup.within(prints)}
    assert found == {c: (i, "near") for c, i in copies.items()}
    assert all(m.similarity >= dedup.THRESHOLD for m in dedup.within(prints))


def test_the_same_samples_in_another_container_are_exact_and_a_group_keeps_its_first(speech, tmp_path) -> None:
    x = speech[2][1]
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_16")
    flac = torch.from_numpy(sf.read(tmp_path / "a.flac", dtype="float32")[0])
    prints = [dedup.fingerprint(torch.from_numpy(x)), dedup.fingerprint(flac),
              dedup.fingerprint(torch.from_numpy(changed(x, 9))), dedup.fingerprint(torch.from_numpy(speech[4][1]))]
    matches = {m.index: m for m in dedup.within(prints)}
    assert set(matches) == {1, 2} and matches[1].kind == "exact" and matches[1].similarity == 1.0
    assert matches[1].twin == matches[2].twin == 0


def test_cssl_data_dedup_writes_the_kept_the_dropped_and_the_leaks(speech, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "audio"
    folder.mkdir()
    entries = []
    for n, (text, x) in enumerate(speech[:8]):
        sf.write(folder / f"u{n}.wav", x, 16000)
        entries.append(Entry(f"u{n}.wav", len(x), text))
    sf.write(folder / "u1-again.flac", speech[1][1], 16000)  # exact
    sf.write(folder / "u2-mp3.mp3", changed(speech[2][1], 3), 16000, format="MP3")  # near
    entries += [Entry("u1-again.flac", len(speech[1][1]), speech[1][0]), Entry("u2-mp3.mp3", 0, speech[2][0])]
    (folder / "broken.wav").write_bytes(b"RIFF0000WAVEfmt not audio")
    entries.append(Entry("broken.wav", 16000, "x"))
    random.Random(0).shuffle(entries[:8])
    write_manifest(Manifest(folder, entries), tmp_path / "train.tsv")
    sf.write(folder / "test0.wav", changed(speech[6][1], 4), 16000)  # the test set holds a copy of u6
    (folder / "test-broken.wav").write_bytes(b"RIFF0000WAVEfmt not audio either")
    write_manifest(Manifest(folder, [Entry("test0.wav", 0, speech[6][0]), Entry("test-broken.wav", 16000, "y")]),
                   tmp_path / "test.tsv")

    out = tmp_path / "kept.tsv"
    assert cssl(["data", "dedup", str(tmp_path / "train.tsv"), str(out), "--against", str(tmp_path / "test.tsv")]) == 0
    kept = [e.path for e in read_manifest(out)]
    assert sorted(kept) == sorted(f"u{n}.wav" for n in range(8) if n != 6)
    rows = [line.split("\t") for line in (tmp_path / "kept.dropped.tsv").read_text().splitlines()[1:]]
    by_path = {r[0]: r for r in rows}
    assert set(by_path) == {"u1-again.flac", "u2-mp3.mp3", "u6.wav"}
    assert by_path["u1-again.flac"][1:] == ["u1.wav", "1.000", "exact"]
    assert by_path["u2-mp3.mp3"][1] == "u2.wav" and by_path["u2-mp3.mp3"][3] == "near"
    assert by_path["u6.wav"][1].endswith("test0.wav") and by_path["u6.wav"][3] == "near in test.tsv"
    assert "broken.wav" in (tmp_path / "kept.rejects.tsv").read_text()
    said = capsys.readouterr().out
    assert "kept 7 of 11 utterances; dropped 1 exact and 1 near duplicates, 1 that duplicate" in said
    assert "1 unreadable" in said
    assert "files unreadable, not checked for leaks" in said and "test-broken.wav" in (tmp_path / "kept.against-rejects.tsv").read_text()

    assert cssl(["data", "dedup", str(tmp_path / "train.tsv"), str(out)]) == 2  # exists: --force to replace
    assert "--force" in capsys.readouterr().err
    assert cssl(["data", "dedup", str(tmp_path / "test.tsv"), str(tmp_path / "t.tsv"),
                 "--against", str(tmp_path / "test.tsv")]) == 2  # everything is a leak: refused, nothing written
    assert "nothing written" in capsys.readouterr().err and not (tmp_path / "t.tsv").exists()


def test_the_inverted_file_index_of_large_sets_finds_copies_as_the_exact_search_does(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(20, 32))[rng.integers(0, 20, 3000)] + 0.5 * rng.normal(size=(3000, 32))
    keys[-100:] = keys[:100] + 0.02 * rng.normal(size=(100, 32))
    keys = (keys / np.linalg.norm(keys, axis=1, keepdims=True)).astype(np.float32)
    _, exact = dedup.summary_neighbours(keys, keys, 5)
    monkeypatch.setattr(dedup, "EXACT_UP_TO", 1000)
    _, approximate = dedup.summary_neighbours(keys, keys, 5)
    assert all(i in exact[2900 + i] and i in approximate[2900 + i] for i in range(100))
    assert (approximate[:, 0] == np.arange(3000)).mean() > 0.99  # each key finds itself first


def test_a_copy_of_a_copy_reports_its_similarity_to_the_kept_first(speech) -> None:
    """A chain: b copies a, c copies b (trimmed and noisier again). c's twin is a, the one kept, and the
    similarity it reports is c's to a, not to b through which it joined."""
    a = speech[6][1]
    b = changed(a, 21)
    c = changed(b, 22)
    prints = [dedup.fingerprint(torch.from_numpy(x)) for x in (a, b, c)]
    matches = {m.index: m for m in dedup.within(prints)}
    assert set(matches) == {1, 2} and matches[1].twin == matches[2].twin == 0
    for i in (1, 2):
        assert matches[i].similarity == pytest.approx(dedup.frame_similarity(prints[i].frames, prints[0].frames))
    assert matches[2].similarity != pytest.approx(dedup.frame_similarity(prints[2].frames, prints[1].frames))
