"""Recognizer, cssl evaluate and cssl transcribe on a checkpoint built in the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cssl.data.manifest import Entry, Manifest, write_manifest
from cssl.decode.recognizer import Recognizer, Word, align_words
from cssl.model import build_model
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import save_checkpoint
from cssl.utils.config import to_dict
from cssl.utils.errors import UsageError
from finetune.config import FinetuneConfig
from tests.conftest import tone, write
from tests.test_model import small


def checkpoint(tmp_path: Path, name: str = "model.pt", seed: int = 0, temperature: float = 1.5,
               text: str = "abc def", prefer_a: bool = True) -> Path:
    torch.manual_seed(seed)
    cfg = FinetuneConfig(model=small())
    vocab = Vocabulary.build([text])
    model = build_model(cfg.model, vocab_size=len(vocab))
    if prefer_a:
        with torch.no_grad():  # a head that always prefers "A" over blank: transcripts are non-empty
            model.aux.bias.zero_()
            model.aux.bias[vocab.symbols.index("A")] = 50.0
    path = tmp_path / name
    save_checkpoint(path, {"kind": "finetune", "config": to_dict(cfg), "model": model.state_dict(),
                           "vocab": vocab.to_dict(), "temperature": temperature})
    return path


def test_chunked_decoding_covers_every_frame(tmp_path: Path) -> None:
    path = checkpoint(tmp_path)
    for samples in (16000 * 5, 81234, 48005):
        wave = torch.randn(samples)
        whole = Recognizer.from_checkpoint(path).log_probs(wave)
        chunked = Recognizer.from_checkpoint(path, chunk_seconds=1.0, overlap_seconds=0.4).log_probs(wave)
        assert chunked.shape == whole.shape  # every frame once, none lost or doubled at the cuts
        assert torch.allclose(chunked.exp().sum(-1), torch.ones(chunked.shape[0]), atol=1e-4)
    assert Recognizer.from_checkpoint(path).temperature == 1.5


def test_each_chunked_frame_comes_from_the_window_where_it_is_furthest_from_an_edge(tmp_path: Path) -> None:
    """Reference: run every window alone, then give each frame the output of the window in which
    it lies furthest from an edge (the documented rule), and compare with the recognizer's stitching."""
    torch.manual_seed(1)
    rec = Recognizer.from_checkpoint(checkpoint(tmp_path), chunk_seconds=1.0, overlap_seconds=0.4)
    with torch.no_grad():
        rec.model.aux.bias.zero_()  # an informative head: frames differ from each other
    wave = torch.randn(81234)
    stride, step = rec.stride, rec.chunk - rec.overlap
    windows = []  # (first global frame, (frames, V) log-probs of the window run alone)
    for start in range(0, wave.numel() - rec.overlap, step):
        segment = wave[start : start + rec.chunk]
        with torch.no_grad():
            logits, _ = rec.model(segment[None], torch.tensor([segment.numel()]))
        windows.append((start // stride, logits[0]))
    total = rec.log_probs(wave).shape[0]
    reference = []
    for f in range(total):
        inside = [(min(f - first, first + len(out) - 1 - f), first, out) for first, out in windows
                  if first <= f < first + len(out)]
        _, first, out = max(inside, key=lambda x: x[0])
        reference.append(out[f - first])
    expected = (torch.stack(reference) / rec.temperature).log_softmax(-1)
    assert len(windows) >= 3
    assert torch.allclose(rec.log_probs(wave), expected, atol=1e-5)
    whole = Recognizer(rec.model, rec.vocab, rec.temperature).log_probs(wave)  # one 30 s window
    assert not torch.allclose(whole, expected, atol=1e-3)  # windows see less context: the test can tell them apart


def test_an_ensemble_decodes_the_mean_of_its_members_calibrated_probabilities(tmp_path: Path) -> None:
    first = checkpoint(tmp_path, "a.pt", seed=1, temperature=1.5, prefer_a=False)
    second = checkpoint(tmp_path, "b.pt", seed=2, temperature=0.7, prefer_a=False)
    wave = torch.randn(24000)
    alone = [Recognizer.from_checkpoint(p).log_probs(wave) for p in (first, second)]  # each with its own temperature
    assert not torch.allclose(alone[0], alone[1], atol=1e-2)  # the members disagree: the mean is not either one
    expected = ((alone[0].exp() + alone[1].exp()) / 2).log()
    both = Recognizer.from_checkpoint(first, ensemble=[second]).log_probs(wave)
    assert torch.allclose(both, expected, atol=1e-5)
    assert torch.allclose(both.exp().sum(-1), torch.ones(both.shape[0]), atol=1e-5)  # still a distribution
    itself = Recognizer.from_checkpoint(first, ensemble=[first]).log_probs(wave)
    assert torch.allclose(itself, alone[0], atol=1e-5)  # a model averaged with itself is that model
    chunked = Recognizer.from_checkpoint(first, ensemble=[second], chunk_seconds=1.0, overlap_seconds=0.4)
    assert chunked.log_probs(wave).shape == both.shape


def test_an_ensemble_of_two_alphabets_is_refused_naming_the_file(tmp_path: Path) -> None:
    first = checkpoint(tmp_path, "a.pt")
    other = checkpoint(tmp_path, "xyz.pt", text="axyz")
    with pytest.raises(UsageError, match="xyz.pt: its vocabulary differs"):
        Recognizer.from_checkpoint(first, ensemble=[other])


def test_transcribe_api_and_commands(tmp_path: Path) -> None:
    path = checkpoint(tmp_path)
    audio = write(tmp_path / "clips" / "a.wav", tone(1.0))
    write(tmp_path / "clips" / "b.flac", tone(0.7, 300, rate=8000), rate=8000)
    result = Recognizer.from_checkpoint(path).transcribe(audio)
    assert result.text == "A" and len(result.words) == 1
    word = result.words[0]
    assert 0.0 <= word.start < word.end <= 1.0 + 1e-6 and 0.0 < word.confidence <= 1.0
    assert Recognizer.from_checkpoint(path).transcribe(tone(1.0)).text == "A"  # arrays work too

    jsonl = tmp_path / "out.jsonl"
    subprocess.run([sys.executable, "-m", "cssl", "transcribe", str(path), str(tmp_path / "clips"), "--jsonl",
                    str(jsonl)], check=True, capture_output=True)
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert [Path(r["audio"]).name for r in rows] == ["a.wav", "b.flac"]
    assert set(rows[0]["words"][0]) == {"word", "start", "end", "confidence"}

    manifest = tmp_path / "test.tsv"
    write_manifest(Manifest(tmp_path / "clips", [Entry("a.wav", 16000, "a"), Entry("b.flac", 11200, "b c")]), manifest)
    proc = subprocess.run([sys.executable, "-m", "cssl", "evaluate", str(path), str(manifest), "--out",
                           str(tmp_path / "eval.jsonl")], check=True, capture_output=True, text=True)
    assert "WER 0.6667" in proc.stdout and "RTF" in proc.stdout  # 1 hit, 1 substitution, 1 deletion
    rows = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert rows[1] == {**rows[1], "reference": "B C", "hypothesis": "A", "errors": 2, "words": 2}
    other = checkpoint(tmp_path, "other.pt", seed=3)  # another model that says "A" to everything
    proc = subprocess.run([sys.executable, "-m", "cssl", "evaluate", str(path), str(manifest), "--ensemble",
                           str(other), "--out", str(tmp_path / "ens.jsonl")], check=True, capture_output=True, text=True)
    assert "WER 0.6667" in proc.stdout and "ensemble of 2 models" in proc.stdout


def test_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    example = next(b for b in blocks if "Recognizer.from_checkpoint" in b)
    (tmp_path / "runs" / "my-asr").mkdir(parents=True)
    checkpoint(tmp_path).rename(tmp_path / "runs" / "my-asr" / "best.pt")  # the paths the README names
    write(tmp_path / "clip.flac", tone(1.0))
    proc = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text, words = proc.stdout.split(" ", 1)
    assert text == "A" and words.startswith("[('A', 0.")  # the head always says "A": one word with its times


def test_beam_words_take_the_times_of_their_own_greedy_occurrence() -> None:
    greedy = [Word("THE", 0.0, 0.2, 0.9), Word("CAT", 0.3, 0.6, 0.8), Word("THE", 0.8, 1.0, 0.7)]
    same = align_words(["THE", "CAT", "THE"], greedy)
    assert [(w.start, w.end, w.confidence) for w in same] == [(0.0, 0.2, 0.9), (0.3, 0.6, 0.8), (0.8, 1.0, 0.7)]
    changed = align_words(["THE", "HAT", "THE"], greedy)  # the LM respelled the middle word
    assert (changed[1].word, changed[1].start, changed[1].end, changed[1].confidence) == ("HAT", 0.3, 0.6, 0.0)
    assert (changed[2].start, changed[2].end) == (0.8, 1.0)
    inserted = align_words(["THE", "CAT", "SAT", "THE"], greedy)  # a word the greedy path lacks
    assert (inserted[2].start, inserted[2].end) == (0.6, 0.8) and inserted[3].start == 0.8
    assert [w.word for w in align_words(["CAT"], greedy)] == ["CAT"]  # greedy words the beam dropped vanish
