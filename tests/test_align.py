"""Phone alignment by synthesis: DTW against a brute-force reference, alignments of eSpeak NG speech
against eSpeak NG's own onsets, and the manifest command's skips."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cssl.data.alignment import read_alignments
from cssl.data.manifest import Entry, Manifest, write_manifest
from cssl.synth.align import (
    AlignConfig,
    align,
    align_manifest,
    boundary_errors,
    dtw_path,
    frame_agreement,
    speech_bounds,
)
from cssl.synth.corpus import UtterancePlan, render_utterance
from cssl.synth.espeak import Espeak

TEXTS = ("the garden was full of yellow flowers", "she said that nobody would ever know")


@pytest.fixture(scope="module")
def espeak() -> Espeak:
    return Espeak()


def reference_dtw_cost(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook O(NM) recursion, one cell at a time."""
    n, m = len(a), len(b)
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i, j in itertools.product(range(1, n + 1), range(1, m + 1)):
        cost = float(np.linalg.norm(a[i - 1] - b[j - 1]))
        total[i, j] = cost + min(total[i - 1, j], total[i, j - 1], total[i - 1, j - 1])
    return float(total[n, m])


@pytest.mark.parametrize("n,m", [(1, 1), (1, 6), (7, 1), (9, 13), (17, 11)])
def test_dtw_path_is_a_cheapest_monotone_path(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    a, b = rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
    path = dtw_path(a, b)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (n - 1, m - 1)
    steps = np.diff(path, axis=0)
    assert set(map(tuple, steps)) <= {(1, 0), (0, 1), (1, 1)}
    cost = sum(float(np.linalg.norm(a[i] - b[j])) for i, j in path)
    assert cost == pytest.approx(reference_dtw_cost(a, b), rel=1e-9)


def test_dtw_finds_a_known_warp() -> None:
    """b is a with every frame of its second half repeated: the path maps each b frame to its source."""
    a = np.eye(10)
    source = list(range(5)) + [k for k in range(5, 10) for _ in range(2)]
    path = dtw_path(a, a[source])
    assert [int(i) for i, _ in path] == source


def test_speech_bounds_find_the_loud_part() -> None:
    rng = np.random.default_rng(0)
    wave = np.concatenate([np.zeros(8000), 0.3 * rng.standard_normal(16000), np.zeros(4000)]).astype(np.float32)
    first, last = speech_bounds(wave, AlignConfig(margin=0.0))
    assert abs(first - 8000) <= 160 and abs(last - 24000) <= 160


def plan(text: str, voice: str, rate: int, seed: int) -> UtterancePlan:
    return UtterancePlan(index=0, split="test", speaker=voice, path="x.flac", text=text.upper(), spoken=text,
                         voice=voice, rate=rate, pitch=40, pitch_range=60, lead=0.4, trail=0.3, peak=0.5,
                         noise_db=-50.0, seed=seed)


@pytest.mark.parametrize("text", TEXTS)
def test_alignment_of_another_voice_follows_its_true_onsets(espeak: Espeak, text: str) -> None:
    """Speech of another eSpeak NG voice, at another pace and with silence around it, aligned by synthesis
    with the default voice: most frames get eSpeak's own phone (a uniform spread of the same phones over
    the speech gets about half as many), and onsets land within a few frames."""
    wave, truth = render_utterance(espeak, plan(text, "en-us+f2", 140, 3))
    segments = align(wave, text.upper(), espeak)
    assert segments[0].start == 0 and segments[-1].end == len(wave)
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
    assert frame_agreement(segments, truth) > 0.75
    errors = np.array(boundary_errors(segments, truth)) / 16  # ms
    assert errors.size > 10 and np.median(errors) < 20


def test_align_manifest_writes_alignments_and_skips_bad_entries(espeak: Espeak, tmp_path: Path) -> None:
    entries = []
    for k, text in enumerate(TEXTS):
        wave, _ = render_utterance(espeak, plan(text, "en-us", 170, k))
        sf.write(tmp_path / f"u{k}.wav", wave, 16000)
        entries.append(Entry(f"u{k}.wav", len(wave), text.upper()))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not audio")
    entries += [Entry("broken.wav", 16000, "HELLO"), Entry("u0.wav", entries[0].num_samples, "")]
    write_manifest(Manifest(tmp_path, entries), tmp_path / "set.jsonl")
    report = align_manifest(tmp_path / "set.jsonl")
    assert report.aligned == 2 and set(report.skipped) == {"broken.wav", "u0.wav"}
    alignments = read_alignments(tmp_path / "set.phones.jsonl")
    assert set(alignments) == {"u0.wav", "u1.wav"}
    assert alignments["u1.wav"][-1].end == entries[1].num_samples


def test_align_command_refuses_unlabeled_manifests(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    write_manifest(Manifest(tmp_path, [Entry("a.wav", 16000)]), tmp_path / "set.jsonl")
    run = subprocess.run([sys.executable, "-m", "cssl", "data", "align", str(tmp_path / "set.jsonl")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "no transcripts" in run.stderr and "set.jsonl" in run.stderr
    assert not (tmp_path / "set.phones.jsonl").exists()
