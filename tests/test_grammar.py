"""Closed-set decoding (--grammar): exact CTC likelihoods of whole phrases, the best one and its posterior."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cssl.decode.grammar import GrammarDecoder, read_phrases
from cssl.decode.recognizer import Recognizer
from cssl.text.vocab import Vocabulary
from cssl.utils.errors import DataError, UsageError
from tests.signals import ctc_emissions, spell

VOCAB = Vocabulary.build(["abcdefghijklmnopqrstuvwxyz"])


def brute_force_loglik(lp: torch.Tensor, target: list[int], blank: int) -> float:
    """log P(target | lp) by enumerating every frame path and collapsing it (repeats merged, blanks dropped)."""
    total = 0.0
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        collapsed = [s for i, s in enumerate(path) if s != blank and (i == 0 or s != path[i - 1])]
        if collapsed == target:
            total += math.exp(sum(float(lp[t, s]) for t, s in enumerate(path)))
    return math.log(total) if total > 0 else -math.inf


def test_likelihoods_equal_the_sum_over_every_alignment() -> None:
    vocab = Vocabulary(("<blank>", "<unk>", "|", "A", "B"))
    decoder = GrammarDecoder(vocab, ["A", "AB", "B A", "BB"])
    torch.manual_seed(3)
    lp = torch.randn(5, len(vocab.symbols)).log_softmax(-1)  # (T, V), T = 5 frames
    result = decoder.score(lp)
    for phrase, got in zip(decoder.phrases, result.log_likelihoods.tolist()):
        assert got == pytest.approx(brute_force_loglik(lp, vocab.encode(phrase), vocab.blank), abs=1e-4), phrase
    # The posterior is the chosen phrase's share of the listed phrases' likelihoods (uniform prior).
    likes = [math.exp(brute_force_loglik(lp, vocab.encode(p), vocab.blank)) for p in decoder.phrases]
    best = max(range(len(likes)), key=likes.__getitem__)
    assert result.text == decoder.phrases[best]
    assert result.posterior == pytest.approx(likes[best] / sum(likes), rel=1e-4)


def test_the_nearest_phrase_wins_and_is_sure_when_the_audio_is_clear() -> None:
    decoder = GrammarDecoder(VOCAB, ["YES", "NO", "GO", "TURN ON THE LIGHT"])
    # "NX": greedy would write a word outside the list; the grammar allows NO (N matches) over GO.
    assert decoder.decode(ctc_emissions(VOCAB.symbols, spell("N") + [{"X": 0.6, "O": 0.4}])) == "NO"
    clear = decoder.score(ctc_emissions(VOCAB.symbols, spell("YES")))
    assert clear.text == "YES" and clear.posterior > 0.99
    # Several words: the boundary between them is part of the phrase.
    assert decoder.decode(ctc_emissions(VOCAB.symbols, spell("TURN|ON|THE|LIGHT"))) == "TURN ON THE LIGHT"
    # An even split between two phrases gives each about half.
    torn = decoder.score(ctc_emissions(VOCAB.symbols, [{"N": 0.5, "G": 0.5}, {"O": 1.0}]))
    assert torn.text in ("NO", "GO") and torn.posterior == pytest.approx(0.5, abs=0.01)


def test_audio_too_short_for_every_phrase_gives_nothing() -> None:
    decoder = GrammarDecoder(VOCAB, ["YES", "STOP"])
    result = decoder.score(ctc_emissions(VOCAB.symbols, spell("Y"))[:1])  # one frame: no phrase fits
    assert result.text == "" and result.posterior == 0.0
    assert not torch.isfinite(result.log_likelihoods).any()


def test_grammar_files_are_read_and_checked(tmp_path: Path) -> None:
    grammar = tmp_path / "commands.txt"
    grammar.write_text("Yes\n\nturn  on the light\nyes\nstop!\n")
    assert read_phrases(grammar) == ["YES", "TURN ON THE LIGHT", "STOP"]
    digits = tmp_path / "digits.txt"
    digits.write_text("1\n2\n")  # this vocabulary has no digits
    with pytest.raises(DataError, match="none of its 2 phrases can be spelled"):
        GrammarDecoder.from_file(VOCAB, digits)
    mixed = GrammarDecoder(VOCAB, ["YES", "NO 1"])
    assert mixed.phrases == ["YES"] and mixed.dropped == ["NO 1"]
    with pytest.raises(DataError, match="cannot read the grammar"):
        GrammarDecoder.from_file(VOCAB, tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(DataError, match="lists no phrase"):
        GrammarDecoder.from_file(VOCAB, empty)


def test_recognizer_and_commands_take_a_grammar(tmp_path: Path) -> None:
    from cssl.data.manifest import Entry, Manifest, write_manifest
    from tests.conftest import tone, write
    from tests.test_recognizer import checkpoint

    ckpt = checkpoint(tmp_path)  # a model that says "A" (its vocabulary: A-F)
    grammar = tmp_path / "grammar.txt"
    grammar.write_text("a\nbad\nfed\n")
    with pytest.raises(UsageError, match="takes no LM"):
        Recognizer.from_checkpoint(ckpt, grammar=str(grammar), lexicon=str(grammar))
    rec = Recognizer.from_checkpoint(ckpt, grammar=str(grammar))
    result = rec.transcribe(tone(1.0))
    assert result.text == "A" and len(result.words) == 1 and result.words[0].confidence > 0.99
    write(tmp_path / "data" / "a.wav", tone(1.0))
    write_manifest(Manifest(tmp_path / "data", [Entry("a.wav", 16000, "a")]), tmp_path / "data" / "set.tsv")
    proc = subprocess.run([sys.executable, "-m", "cssl", "evaluate", str(ckpt), str(tmp_path / "data" / "set.tsv"),
                           "--grammar", str(grammar), "--threads", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"(grammar: {grammar})" in proc.stdout and "WER 0.0000" in proc.stdout
    grammar.write_text("a\nbad\nxyz\n")  # X, Y, Z: not in the model's vocabulary
    proc = subprocess.run([sys.executable, "-m", "cssl", "transcribe", str(ckpt), str(tmp_path / "data" / "a.wav"),
                           "--grammar", str(grammar), "--threads", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "1 phrase(s) use characters the model cannot write and are left out: XYZ" in proc.stderr
    assert proc.stdout.split("\t")[-1].strip() == "A"
    grammar.write_text("a\nbad\nда\n")  # another script: nothing left once normalised, still named
    assert GrammarDecoder.from_file(VOCAB, grammar).dropped == ["да"]
    grammar.write_text("a\n")  # one phrase: certain of it whatever is said
    proc = subprocess.run([sys.executable, "-m", "cssl", "transcribe", str(ckpt), str(tmp_path / "data" / "a.wav"),
                           "--grammar", str(grammar), "--threads", "1"], capture_output=True, text=True)
    assert proc.returncode == 0 and "one phrase to choose from" in proc.stderr, proc.stderr


def test_speeds_average_the_phrase_log_likelihoods_over_warped_copies(tmp_path: Path) -> None:
    import torchaudio

    from tests.conftest import tone
    from tests.test_recognizer import checkpoint

    ckpt = checkpoint(tmp_path)  # a model that says "A" (its vocabulary: A-F)
    grammar = tmp_path / "grammar.txt"
    grammar.write_text("a\nbad\nfed\n")
    with pytest.raises(UsageError, match="need a grammar"):
        Recognizer.from_checkpoint(ckpt, speeds=(0.9, 1.0))
    with pytest.raises(UsageError, match="positive"):
        Recognizer.from_checkpoint(ckpt, grammar=str(grammar), speeds=(0.9, 0.0))
    plain = Recognizer.from_checkpoint(ckpt, grammar=str(grammar))
    warped = Recognizer.from_checkpoint(ckpt, grammar=str(grammar), speeds=(0.9, 1.0, 1.1))
    wave = torch.as_tensor(tone(1.0, 300) + 0.3 * tone(1.0, 1700), dtype=torch.float32)
    # Each copy played f times faster, as Kaldi does it: the samples taken as recorded at 16 kHz * f.
    copies = [torchaudio.functional.resample(wave, round(16000 * f), 16000) for f in (0.9, 1.0, 1.1)]
    assert [c.numel() for c in copies] == [17778, 16000, 14546]  # ceil(16000 / f)
    each = torch.stack([plain.grammar.score(plain.log_probs(c)).log_likelihoods for c in copies])  # (3, P)
    mean = each.mean(dim=0)
    result = warped.transcribe(wave.numpy())
    assert result.text == plain.grammar.phrases[int(mean.argmax())]
    assert result.words[0].confidence == pytest.approx(float(mean.softmax(0).max()), rel=1e-5)
    assert not torch.allclose(each[0], each[1])  # the warps do change what the model hears
    assert plain.transcribe(wave.numpy()).words[0].confidence == pytest.approx(float(each[1].softmax(0).max()), rel=1e-5)
