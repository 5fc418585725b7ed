"""The benchmarks' real-speech splits on a generated LibriSpeech-style folder: speaker-disjoint, balanced
by sex, fixed; the pretraining pool leaves every test speaker out; a model that heard a test speaker is
refused by name; Opus, MP3, FLAC and WAV decode alike in the manifest builder and the loader."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import real_corpora  # noqa: E402

from cssl.data.audio import load_audio  # noqa: E402
from cssl.data.manifest import ManifestError, read_manifest  # noqa: E402
from cssl.data.scan import ScanConfig, scan_folder  # noqa: E402
from pretrain.release import training_speakers  # noqa: E402

SPEAKERS = {str(100 + k): "F" if k % 2 else "M" for k in range(12)}


def librispeech_folder(root: Path) -> Path:
    """A Mini-LibriSpeech-shaped folder: 12 speakers (6 F, 6 M), one chapter of 3 short Opus clips each."""
    folder = root / "librispeech-mini"
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    rng = np.random.default_rng(0)
    for speaker, sex in SPEAKERS.items():
        lines.append(f"{speaker:<5}| {sex} | train-clean-100  | 25.00 | Reader {speaker}")
        chapter = folder / "train-clean-5" / speaker / "7"
        chapter.mkdir(parents=True)
        texts = []
        for n in range(3):
            utt = f"{speaker}-7-{n:04d}"
            sf.write(chapter / f"{utt}.ogg", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000,
                     format="OGG", subtype="OPUS")
            texts.append(f"{utt} WORDS OF READER {speaker}")
        (chapter / f"{speaker}-7.trans.txt").write_text("\n".join(texts) + "\n")
    (folder / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    librispeech_folder(root)
    return root


def test_librispeech_split_is_by_speaker_balanced_and_fixed(data: Path) -> None:
    corpus = real_corpora.librispeech(data / "librispeech-mini")
    speakers = {part: {e.speaker for e in corpus.labeled[part]} for part in ("train", "dev", "test")}
    assert sum(map(len, speakers.values())) == 12 and len(set().union(*speakers.values())) == 12
    for part, count in (("test", 2), ("dev", 2)):
        sexes = [SPEAKERS[s.removeprefix("ls:")] for s in speakers[part]]
        assert sexes.count("F") == count and sexes.count("M") == count, part
    assert all(e.text and e.text.startswith("WORDS OF READER") for e in corpus.labeled["test"])
    assert real_corpora.librispeech(data / "librispeech-mini").test_speakers == corpus.test_speakers


def test_pretraining_pool_leaves_the_test_speakers_out(data: Path, tmp_path: Path) -> None:
    summary = real_corpora.pretraining_pool(data, tmp_path, align=False)
    pool = read_manifest(tmp_path / "pretrain.jsonl")
    tests = set(json.loads((tmp_path / "test_speakers.json").read_text())["ls"])
    assert len(tests) == 4 and not tests & {e.speaker for e in pool}
    assert len(pool) == 3 * 8 == summary["pool"]["clips"] and not pool.labeled
    assert {e.speaker for e in read_manifest(tmp_path / "pretrain-dev.jsonl")} <= {e.speaker for e in pool}


def test_a_model_that_heard_a_test_speaker_is_refused_by_name(data: Path, tmp_path: Path) -> None:
    corpus = real_corpora.librispeech(data / "librispeech-mini")
    leaked = sorted(corpus.test_speakers)[:1] + ["ls:999"]
    with pytest.raises(ManifestError, match=f"1 test speaker.*{leaked[0]}"):
        real_corpora.refuse_test_speakers(leaked, corpus.test_speakers, "model.pt", "LibriSpeech-mini")
    real_corpora.refuse_test_speakers(["ls:999"], corpus.test_speakers, "model.pt", "LibriSpeech-mini")
    # a release records its training manifest's speakers; the benchmarks read them back
    real_corpora.pretraining_pool(data, tmp_path, align=False)
    config = {"data": {"manifest": str(tmp_path / "pretrain.jsonl")}}
    heard = training_speakers(config)
    torch.save({"kind": "pretrain", "speakers": heard, "model": {}}, tmp_path / "release.pt")
    assert real_corpora.pretrained_speakers(tmp_path / "release.pt") == set(heard)
    assert len(heard) == 8 and not set(heard) & corpus.test_speakers
    torch.save({"kind": "pretrain", "config": {"data": {"manifest": "/gone.jsonl"}}, "model": {}}, tmp_path / "old.pt")
    assert real_corpora.pretrained_speakers(tmp_path / "old.pt") is None


def test_opus_mp3_flac_and_wav_decode_alike(tmp_path: Path) -> None:
    t = np.arange(16000 * 2) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    for name, fmt, subtype in (("a.wav", "WAV", "PCM_16"), ("a.flac", "FLAC", "PCM_16"),
                               ("a.ogg", "OGG", "OPUS"), ("a.mp3", "MP3", "MPEG_LAYER_III")):
        sf.write(tmp_path / name, wave, 16000, format=fmt, subtype=subtype)
    manifest, rejects = scan_folder(tmp_path, ScanConfig(workers=1))
    assert len(manifest) == 4 and len(rejects) == 0
    assert {e.num_samples for e in manifest} == {len(wave)}
    for e in manifest:
        decoded = load_audio(manifest.audio_path(e)).numpy()
        assert decoded.shape == wave.shape, e.path
        best = max(np.corrcoef(decoded[lag:], wave[: len(wave) - lag])[0, 1] for lag in range(0, 1200, 1))
        assert best > 0.95, (e.path, best)


def test_linear_ctc_probe_reads_characters_off_features_that_hold_them() -> None:
    import ctc_probe

    symbols = ["<blank>", "a", "b", "c"]
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abc"), size=int(rng.integers(2, 6)))) for _ in range(24)]

    def frames(text: str, noise: float) -> torch.Tensor:
        """Each character for 3 frames then a blank frame, as one-hot rows plus noise: (T, 8)."""
        ids = [i for c in text for i in [symbols.index(c)] * 3 + [0]]
        x = torch.zeros(len(ids), 8)
        x[torch.arange(len(ids)), torch.tensor(ids)] = 1.0
        return x + noise * torch.from_numpy(rng.standard_normal(x.shape)).float()

    targets = [torch.tensor([symbols.index(c) for c in t]) for t in texts]
    head = ctc_probe.fit_head([frames(t, 0.05) for t in texts], targets, len(symbols), epochs=60, lr=0.05)
    assert [ctc_probe.greedy(head, frames(t, 0.05), symbols) for t in ("abca", "cab", "bb")] == ["abca", "cab", "bb"]
    noise = ctc_probe.fit_head([torch.randn(4 * len(t), 8) for t in texts], targets, len(symbols), epochs=60, lr=0.05)
    assert ctc_probe.greedy(noise, torch.randn(16, 8), symbols) != "abca"  # nothing to read off pure noise


def test_standardised_ctc_probe_reads_characters_whatever_each_dimension_scale() -> None:
    import ctc_probe

    symbols = ["<blank>", "a", "b", "c"]
    rng = np.random.default_rng(1)
    texts = ["".join(rng.choice(list("abc"), size=int(rng.integers(2, 6)))) for _ in range(24)]
    # Per-dimension offsets and scales over six orders of magnitude, and a loud nuisance dimension:
    # the layout of a collapsed layer (one dominant direction) holding its content in small ones.
    scale = torch.tensor([1e-3, 1e-3, 1e-2, 1e-3, 1.0, 10.0, 100.0, 1e3])
    offset = torch.tensor([5.0, -3.0, 0.0, 2.0, 0.0, 0.0, 50.0, 1e3])

    def frames(text: str) -> torch.Tensor:
        """One-hot characters (3 frames each, then a blank) plus noise, rescaled per dimension: (T, 8)."""
        ids = [i for c in text for i in [symbols.index(c)] * 3 + [0]]
        x = torch.zeros(len(ids), 8)
        x[torch.arange(len(ids)), torch.tensor(ids)] = 1.0
        x[:, 7] = torch.from_numpy(rng.standard_normal(len(ids))).float()  # nuisance
        return (x + 0.05 * torch.from_numpy(rng.standard_normal(x.shape)).float()) * scale + offset

    xs = [frames(t) for t in texts]
    mean, std = ctc_probe.standardiser(xs)
    flat = (torch.cat(xs) - mean) / std  # (sum T, 8)
    assert torch.allclose(flat.mean(0), torch.zeros(8), atol=2e-3)  # float32 rounding of 1e-3 steps on offsets of 5
    assert torch.allclose(flat.std(0), torch.ones(8), atol=2e-3)
    targets = [torch.tensor([symbols.index(c) for c in t]) for t in texts]
    head = ctc_probe.fit_head([(x - mean) / std for x in xs], targets, len(symbols), epochs=60, lr=0.05)
    tests = ("abca", "cab", "bb")
    assert [ctc_probe.greedy(head, (frames(t) - mean) / std, symbols) for t in tests] == list(tests)
