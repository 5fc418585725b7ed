from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from cssl.decode.lm import BOS, EOS, UNK, build_ngram
from tests.signals import ctc_emissions, spell

TEXT = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the cat ate", "a dog ate the mat"]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_conditional_distributions_sum_to_one(order: int) -> None:
    model = build_ngram(TEXT, order)
    vocab = sorted({w for s in TEXT for w in s.upper().split()} | {EOS, UNK})
    for context in [(BOS,), (BOS, "THE"), ("THE", "CAT"), ("A", "DOG"), ("MAT",), ("ZEBRA", "THE"), ()]:
        total = sum(math.exp(model.score(context, w)) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-6), (order, context)


def test_seen_continuations_beat_unseen_ones() -> None:
    model = build_ngram(TEXT, 3)
    assert model.score((BOS, "THE"), "CAT") > model.score((BOS, "THE"), "ATE")
    assert model.score(("SAT",), "ON") > model.score(("SAT",), "DOG")


def test_arpa_loads_in_the_ctc_beam_decoder(tmp_path: Path) -> None:
    from torchaudio.models.decoder import ctc_decoder

    text = tmp_path / "text.txt"
    text.write_text("\n".join(TEXT) + "\n")
    arpa = tmp_path / "lm.arpa"
    proc = subprocess.run([sys.executable, "-m", "cssl", "lm", "build", str(text), str(arpa), "--order", "3"],
                          capture_output=True, text=True, check=True)
    assert "3-gram" in proc.stdout
    content = arpa.read_text()
    assert content.splitlines()[1] == "\\data\\" and "\\3-grams:" in content and content.rstrip().endswith("\\end\\")
    lexicon = tmp_path / "lexicon.txt"
    words = sorted({w for s in TEXT for w in s.upper().split()})
    lexicon.write_text("".join(f"{w}\t{' '.join(w)} |\n" for w in words))
    tokens = ["<blank>", "|", *sorted({c for w in words for c in w})]
    decoder = ctc_decoder(lexicon=str(lexicon), tokens=tokens, lm=str(arpa), blank_token="<blank>",
                          sil_token="|", unk_word="<unk>", beam_size=20, lm_weight=2.0)

    emissions = lambda frames: ctc_emissions(tokens, frames)[None]  # noqa: E731  (1, T, V)
    # "A ?AT |" with C and M equally likely: only "A CAT" is in the LM's text, so the LM decides.
    hyp = decoder(emissions(spell("A|") + [{"C": 0.5, "M": 0.5}] + spell("AT|")))[0][0]
    assert hyp.words == ["A", "CAT"]
    hyp = decoder(emissions(spell("THE|") + [{"C": 0.5, "M": 0.5}] + spell("AT|ATE|")))[0][0]
    assert hyp.words == ["THE", "CAT", "ATE"]  # "the cat ate" is a training sentence, "the mat ate" is not


def test_damaged_arpa_files_are_named_errors_not_decoder_crashes(tmp_path) -> None:
    from cssl.decode.beam import BeamDecoder, arpa_words
    from cssl.decode.lm import build_ngram, write_arpa
    from cssl.text.vocab import Vocabulary
    from cssl.utils.errors import DataError

    good = tmp_path / "good.arpa"
    write_arpa(build_ngram(["the cat sat", "the dog sat"], order=2), good)
    assert sorted(arpa_words(good)) == ["CAT", "DOG", "SAT", "THE"]  # normalised to upper case
    text = good.read_text()
    lines = text.splitlines()
    cases = {
        "cut.arpa": (text[: len(text) // 2], "before"),  # a cut-off download
        "binary.arpa": (b"\xff\xfe\x00garbage", "cannot read"),
        "number.arpa": (text.replace(lines[[i for i, x in enumerate(lines) if x.startswith("\\1-grams")][0] + 1],
                                     "abc\tTHE\t-0.1"), "log10 probability"),
        "counts.arpa": (text.replace("ngram 1=", "ngram 1=9"), "announces"),
    }
    vocab = Vocabulary.build(["the cat sat dog"])
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        with pytest.raises(DataError, match=message):
            arpa_words(path)
        with pytest.raises(DataError, match=name):
            BeamDecoder(vocab, lm=path)
