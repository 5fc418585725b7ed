"""Beam search restricted to a word list (--lexicon), with and without an LM."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cssl.decode.beam import BeamDecoder
from cssl.decode.lm import build_ngram, write_arpa
from cssl.text.vocab import Vocabulary
from cssl.utils.errors import DataError, UsageError
from tests.signals import ctc_emissions, spell

VOCAB = Vocabulary.build(["abcdefghijklmnopqrstuvwxyz"])


def emissions(frames: list[dict[str, float]]) -> torch.Tensor:
    """(T, V) log-probabilities over the A-Z vocabulary. As in a trained model, the word boundary
    ``|`` is all but impossible (1e-12) on the frames that do not spell it."""
    lp = ctc_emissions(VOCAB.symbols, frames)
    bar = VOCAB.symbols.index("|")
    lp[lp[:, bar] < -1.0, bar] = math.log(1e-12)
    return lp.log_softmax(-1)


def test_lexicon_alone_snaps_to_the_nearest_listed_word(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("yes no\nup down\n")  # one or more per line
    decoder = BeamDecoder(VOCAB, lexicon=words, beam_size=20)
    assert decoder.words == ["YES", "NO", "UP", "DOWN"]
    # "DOWX": greedy would spell a word outside the list; the lexicon allows only DOWN here.
    # Emissions end as the models' targets do (Vocabulary.encode): no "|" after the last word.
    almost = emissions(spell("DOW") + [{"X": 0.6, "N": 0.4}])
    assert decoder.decode(almost) == "DOWN"
    assert decoder.decode(emissions(spell("UP|NO"))) == "UP NO"  # several words, none collapsed, the last kept
    assert decoder.decode(emissions(spell("|UP|NO|"))) == "UP NO"  # boundaries at the ends are silence
    assert VOCAB.decode(VOCAB.encode("up no")) == "UP NO" and VOCAB.encode("up no")[-1] != VOCAB.symbols.index("|")
    # A last letter held over frames without blanks (D O W N N N) is one N, not a frame to explain away.
    held = emissions(spell("DOW") + [{"N": 1.0}])[:-1]  # (T, V): D _ O _ W _ N, its closing blank cut
    assert decoder.decode(torch.cat([held, held[-1:], held[-1:]])) == "DOWN"


def test_lexicon_with_an_lm_keeps_to_the_list(tmp_path: Path) -> None:
    arpa = tmp_path / "lm.arpa"
    write_arpa(build_ngram(["go left", "go right", "stop"], 2), arpa)
    words = tmp_path / "words.txt"
    words.write_text("go\nleft\nright\nstop\n")
    decoder = BeamDecoder(VOCAB, arpa, lexicon=words, beam_size=20, lm_weight=1.0)
    assert decoder.decode(emissions(spell("GO|LEFT"))) == "GO LEFT"
    assert decoder.decode(emissions(spell("STOX"))) == "STOP"


def test_unusable_word_lists_are_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs an LM"):
        BeamDecoder(VOCAB)
    digits = tmp_path / "digits.txt"
    digits.write_text("1 2 3\n")  # this vocabulary has no digits
    with pytest.raises(DataError, match="none of its 3 words can be spelled"):
        BeamDecoder(VOCAB, lexicon=digits)
    with pytest.raises(DataError, match="cannot read the word list"):
        BeamDecoder(VOCAB, lexicon=tmp_path / "missing.txt")


def test_commands_take_a_word_list(tmp_path: Path) -> None:
    import subprocess
    import sys

    from cssl.data.manifest import Entry, Manifest, write_manifest
    from tests.conftest import tone, write
    from tests.test_recognizer import checkpoint

    ckpt = checkpoint(tmp_path)  # a model that says "A" (its vocabulary: A-F)
    write(tmp_path / "data" / "a.wav", tone(1.0))
    write_manifest(Manifest(tmp_path / "data", [Entry("a.wav", 16000, "a")]), tmp_path / "data" / "set.tsv")
    words = tmp_path / "words.txt"
    words.write_text("a\nbad\n")
    proc = subprocess.run([sys.executable, "-m", "cssl", "evaluate", str(ckpt), str(tmp_path / "data" / "set.tsv"),
                           "--lexicon", str(words), "--threads", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "(beam + lexicon)" in proc.stdout and "WER 0.0000" in proc.stdout
    # Progress goes to stderr: the closing line counts the utterances and gives the WER.
    assert "evaluate: 100% 1/1 [" in proc.stderr and "WER 0.000]" in proc.stderr
