"""Pseudo-labels for self-training: confidence, selection, the transcription pass and ``cssl pseudo-label``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
import torch

from cssl.data.manifest import Entry, Manifest, read_manifest, write_manifest
from cssl.decode.pseudo_label import pseudo_label, select, utterance_confidence
from cssl.decode.recognizer import Transcript, Word
from tests.conftest import tone, write


def test_utterance_confidence_is_the_per_symbol_likelihood() -> None:
    assert utterance_confidence(math.log(0.25)) == pytest.approx(0.25)
    assert utterance_confidence(None) == 0.0


def test_transcripts_carry_the_ctc_likelihood_of_their_text_per_symbol(tmp_path: Path) -> None:
    from cssl.decode.recognizer import Recognizer
    from cssl.model.ctc import sequence_log_likelihood
    from cssl.text.vocab import Vocabulary
    from tests.test_grammar import brute_force_loglik
    from tests.test_recognizer import checkpoint

    vocab = Vocabulary(("<blank>", "<unk>", "|", "A", "B"))
    torch.manual_seed(5)
    lp = torch.randn(5, len(vocab.symbols)).log_softmax(-1)  # (T, V), T = 5 frames
    for target in (vocab.encode("A"), vocab.encode("AB"), vocab.encode("B A"), vocab.encode("BB")):
        assert sequence_log_likelihood(lp, target, vocab.blank) == pytest.approx(
            brute_force_loglik(lp, target, vocab.blank), abs=1e-4)
    assert sequence_log_likelihood(lp, vocab.encode("AAAA"), vocab.blank) == -math.inf  # needs 7 frames
    rec = Recognizer.from_checkpoint(checkpoint(tmp_path))  # a model that says "A"
    wave = torch.randn(16000)
    result = rec.transcribe(wave.numpy())
    ids = rec.vocab.encode(result.text)
    assert result.text == "A" and result.log_likelihood == pytest.approx(
        sequence_log_likelihood(rec.log_probs(wave), ids, rec.vocab.blank) / len(ids))
    assert -1e-3 < result.log_likelihood <= 0  # A on every frame: every path says "A"


def test_selection_keeps_the_most_confident_share_of_nonempty_hypotheses() -> None:
    confidences = [0.9, 0.1, 0.5, 0.9, 0.7, 0.3]
    texts = ["a", "b", "c", "d", "", "f"]
    # keep 0.5 of 6: the three most confident, 0.9 (index 0), 0.9 (index 3, tie: later), 0.7 (index 4, empty: out)
    assert select(confidences, texts, keep=0.5) == [True, False, False, True, False, False]
    assert select(confidences, texts, keep=1.0) == [True, True, True, True, False, True]
    assert select(confidences, texts, keep=1.0, min_confidence=0.5) == [True, False, True, True, False, False]
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="keep"):
            select(confidences, texts, keep=bad)


class Scripted:
    """A recognizer whose transcript of each file is given (a missing file raises, as loading does)."""

    def __init__(self, texts: dict[str, tuple[str, float | None]]) -> None:
        self.texts = texts

    def transcribe(self, path: Path) -> Transcript:
        from cssl.data.audio import load_audio

        load_audio(path)  # unreadable files raise AudioError here
        text, log_likelihood = self.texts[path.name]
        return Transcript(text, [Word(w, 0.0, 0.1, 0.5) for w in text.split()], 1.0, log_likelihood)


def test_pass_skips_unreadable_files_and_scores_the_kept_labels(tmp_path: Path) -> None:
    refs = {"a.wav": "the cat sat", "b.wav": "a dog ran", "c.wav": "one two", "d.wav": "red"}
    hyps = {"a.wav": ("the cat sat", math.log(0.9)), "b.wav": ("a fog", math.log(0.3)),
            "c.wav": ("one too", math.log(0.65)), "d.wav": ("", None)}
    for name in refs:
        write(tmp_path / name, tone(0.5))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not audio")
    entries = [Entry(name, 8000, text) for name, text in refs.items()] + [Entry("broken.wav", 8000, "lost")]
    manifest = Manifest(tmp_path, entries)
    logged: list[str] = []
    labels = pseudo_label(Scripted(hyps), manifest, keep=0.5, log=logged.append, progress=False)
    assert len(labels.rejects) == 1 and "broken.wav" in logged[0]
    assert [p.confidence for p in labels.labels] == pytest.approx([0.9, 0.3, 0.65, 0.0])
    assert labels.kept == [True, False, True, False]
    kept = labels.manifest()
    assert [e.text for e in kept] == ["the cat sat", "one too"]
    assert all(Path(e.path).is_absolute() and Path(e.path).is_file() for e in kept)
    assert labels.kept_seconds == pytest.approx(1.0)
    # Quality against the manifest's own transcripts, computed independently with jiwer.
    refs_up = [refs[n].upper() for n in ("a.wav", "c.wav")]
    assert labels.error_rates(kept_only=True).wer == pytest.approx(
        jiwer.wer(refs_up, ["THE CAT SAT", "ONE TOO"]))
    every = labels.error_rates(kept_only=False)
    assert every.wer == pytest.approx(jiwer.process_words(
        [r.upper() for r in refs.values()], ["THE CAT SAT", "A FOG", "ONE TOO", ""]).wer)
    unlabeled = pseudo_label(Scripted(hyps), Manifest(tmp_path, [Entry("a.wav", 8000)]), keep=1.0, progress=False)
    assert unlabeled.error_rates(kept_only=True) is None


def test_command_writes_a_training_manifest_with_the_real_labels(tmp_path: Path) -> None:
    from tests.test_recognizer import checkpoint

    ckpt = checkpoint(tmp_path)  # a model that says "A"
    data = tmp_path / "data"
    for name in ("u1.wav", "u2.wav", "l1.wav"):
        write(data / name, tone(1.0))
    write_manifest(Manifest(data, [Entry("u1.wav", 16000, "a"), Entry("u2.wav", 16000, "b")]), data / "unlab.tsv")
    write_manifest(Manifest(data, [Entry("l1.wav", 16000, "a")]), data / "real.tsv")
    out = tmp_path / "st" / "train.jsonl"
    base = [sys.executable, "-m", "cssl", "pseudo-label", str(ckpt), str(data / "unlab.tsv"), "--out", str(out),
            "--threads", "1"]
    proc = subprocess.run([*base, "--keep", "1", "--add", str(data / "real.tsv")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    train = read_manifest(out)
    assert [(Path(e.path).name, e.text) for e in train] == [("u1.wav", "A"), ("u2.wav", "A"), ("l1.wav", "a")]
    assert all(train.audio_path(e).is_file() for e in train)
    assert "(kept): WER 0.5000" in proc.stdout  # "A" for "a" and "b"
    hyps = [json.loads(line) for line in out.with_name("train.hypotheses.jsonl").read_text().splitlines()]
    assert [h["kept"] for h in hyps] == [True, True] and all(0 < h["confidence"] <= 1 for h in hyps)
    proc = subprocess.run([*base, "--keep", "0"], capture_output=True, text=True)
    assert proc.returncode != 0 and "--keep" in proc.stderr
    proc = subprocess.run([*base, "--add", str(data / "unlab.tsv").replace("unlab", "nothing")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "nothing.tsv" in proc.stderr


def test_command_never_writes_over_its_inputs_and_replaces_outputs_only_when_forced(tmp_path):
    from tests.test_recognizer import checkpoint

    ckpt = checkpoint(tmp_path)
    data = tmp_path / "data"
    for name in ("u1.wav", "l1.wav"):
        write(data / name, tone(1.0))
    write_manifest(Manifest(data, [Entry("u1.wav", 16000, "a")]), data / "unlab.tsv")
    write_manifest(Manifest(data, [Entry("l1.wav", 16000, "a")]), data / "real.jsonl")
    real = (data / "real.jsonl").read_text()
    base = [sys.executable, "-m", "cssl", "pseudo-label", str(ckpt), str(data / "unlab.tsv"), "--threads", "1", "--keep", "1"]
    for clash in (["--out", str(data / "unlab.tsv")], ["--add", str(data / "real.jsonl"), "--out", str(data / "real.jsonl")]):
        proc = subprocess.run([*base, *clash, "--force"], capture_output=True, text=True)
        assert proc.returncode != 0 and "also an input" in proc.stderr, proc.stderr
    assert (data / "real.jsonl").read_text() == real and read_manifest(data / "unlab.tsv")[0].text == "a"
    out = tmp_path / "pl.jsonl"
    out.write_text("precious\n")
    proc = subprocess.run([*base, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode != 0 and "--force" in proc.stderr and out.read_text() == "precious\n"
    proc = subprocess.run([*base, "--out", str(out), "--force"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [e.text for e in read_manifest(out)] == ["A"]
    # nothing kept (every file unreadable): a failure status and a reason, not a silent empty manifest
    (data / "bad.wav").write_bytes(b"RIFF not audio")
    write_manifest(Manifest(data, [Entry("bad.wav", 16000, "a")]), data / "bad.tsv")
    proc = subprocess.run([*base[:5], str(data / "bad.tsv"), "--out", str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no file could be read" in proc.stderr, proc.stderr
