from __future__ import annotations

from pathlib import Path

import pytest

from cssl.text import Vocabulary, from_letters, normalize_text, to_letters, words


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, world!", "HELLO WORLD"),
        ("  café   déjà-vu ", "CAFE DEJA VU"),
        ("don\u2019t stop", "DON'T STOP"),
        ("'quoted' words'", "QUOTED WORDS"),
        ("room 101", "ROOM 101"),
        ("...", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_letters_round_trip() -> None:
    assert to_letters("hi there") == "H I | T H E R E |"
    assert from_letters("H I | T H E R E |") == "HI THERE"
    assert from_letters(to_letters("it's a cat")) == "IT'S A CAT"
    assert words("a, b") == ["A", "B"]


def test_vocab_layout_encode_decode(tmp_path: Path) -> None:
    vocab = Vocabulary.build(["the cat", "it's dog"])
    assert vocab.symbols[:3] == ("<blank>", "<unk>", "|")
    assert vocab.symbols[3:] == tuple(sorted(set("THECATIT'SDOG")))
    ids = vocab.encode("The dog!")
    assert ids[3] == vocab.word_sep and vocab.blank not in ids
    assert vocab.decode(ids) == "THE DOG"
    # CTC-style blanks between symbols are dropped on decode
    assert vocab.decode([0] + ids[:3] + [0, 2, 0] + ids[4:]) == "THE DOG"
    unknown = vocab.encode("zebra")
    assert unknown[0] == vocab.unk
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocabulary.load(path) == vocab


def test_vocab_min_count_and_bad_files(tmp_path: Path) -> None:
    vocab = Vocabulary.build(["aaa b"], min_count=2)
    assert "B" not in vocab.symbols and "A" in vocab.symbols
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(bad)
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(("A", "B", "C"))
