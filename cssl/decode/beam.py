"""Beam-search CTC decoding over a lexicon, with or without a word n-gram LM (torchaudio's flashlight decoder).

The decoder spells every word it may output: each word as its letters followed by the
word boundary ``|``. Models learn targets from :meth:`Vocabulary.encode`, which puts ``|``
only between words, so the last word of an utterance has none to end on: :meth:`BeamDecoder.decode`
appends one certain ``|`` frame, without which the decoder drops the last word or trades it for a
word it can end (spelling words without ``|`` instead would make a repeated last letter, ``DOWNN``,
cost a whole frame's probability). Without a word list those are the ARPA model's unigrams that the
character vocabulary can spell, generated next to the ARPA file on first use
(``<name>.lexicon.txt``). With a word list (``lexicon=``, one or more words per line:
command-and-control, digits) the output is restricted to its words, with the LM or,
without one, on acoustic scores alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

from cssl.text.normalize import normalize_text
from cssl.text.vocab import BLANK, UNK, Vocabulary
from cssl.utils.errors import DataError, UsageError

WORD_SEP = "|"
_IMPOSSIBLE = -1e4
"""Log-probability of the tokens other than ``|`` in the appended boundary frame (finite: no NaN)."""


def arpa_words(path: str | Path) -> list[str]:
    """The unigram words of an ARPA file, without <s>, </s> and <unk>, after checking the whole file's form
    (header counts, one log10 probability and N words per N-gram line, ``\\end\\``): a damaged file is a
    :class:`DataError` naming its line, not a crash inside the decoder."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the language model ({err}); give an ARPA text file "
                        "(cssl lm build)") from None

    def bad(number: int, why: str) -> DataError:
        return DataError(f"{path}, line {number}: {why}; is it a whole ARPA language model? Rebuild it (cssl lm build)")

    counts: dict[int, int] = {}
    seen: dict[int, int] = {}
    words: list[str] = []
    order, ended = None, False
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text == "\\data\\":
            continue
        if text == "\\end\\":
            ended = True
            break
        if text.startswith("ngram ") and order is None:
            n, _, count = text[len("ngram "):].partition("=")
            if not (n.strip().isdigit() and count.strip().isdigit()):
                raise bad(number, f"{text!r} is not an 'ngram N=COUNT' line")
            counts[int(n)] = int(count)
            continue
        if text.startswith("\\") and text.endswith("-grams:"):
            order = int(text[1:-len("-grams:")]) if text[1:-len("-grams:")].isdigit() else -1
            if order not in counts:
                raise bad(number, f"section {text} is not in the header's counts")
            seen[order] = 0
            continue
        if order is None:
            raise bad(number, f"{text[:40]!r} before the first N-grams section")
        fields = text.split()
        try:
            float(fields[0])
            if len(fields) > order + 1:
                float(fields[order + 1])
        except ValueError:
            raise bad(number, f"{text[:60]!r} does not start with a log10 probability") from None
        if len(fields) not in (order + 1, order + 2):
            raise bad(number, f"a {order}-gram line needs {order} word(s), got {text[:60]!r}")
        seen[order] += 1
        if order == 1 and fields[1] not in ("<s>", "</s>", "<unk>"):
            words.append(fields[1])
    if not counts or 1 not in seen:
        raise DataError(f"{path}: no 1-grams found; is it an ARPA language model?")
    if not ended:
        raise bad(len(lines), "the file ends before \\end\\ (cut short?)")
    wrong = {n: (counts[n], seen.get(n, 0)) for n in counts if counts[n] != seen.get(n, 0)}
    if wrong:
        n, (said, found) = next(iter(wrong.items()))
        raise bad(len(lines), f"the header announces {said} {n}-grams, the file holds {found}")
    return words


def write_lexicon(words: list[str], vocab: Vocabulary, path: Path) -> int:
    """Writes ``WORD<TAB>W O R D |`` lines for words spelled within ``vocab``; returns how many."""
    chars = set(vocab.symbols[3:])
    kept = [w for w in words if w and set(w) <= chars]
    path.write_text("".join(f"{w}\t{' '.join(w)} {WORD_SEP}\n" for w in kept), encoding="utf-8")
    return len(kept)


def read_lines(path: str | Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file (``what`` names it in the error when it cannot be read)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the {what} ({err})") from None


def read_normalized_lines(path: str | Path, what: str) -> list[str]:
    """The normalised lines of a text file (see :func:`read_lines`)."""
    return [normalize_text(line) for line in read_lines(path, what)]


def read_word_list(path: str | Path) -> list[str]:
    """The distinct normalised words of a text file (one or more per line), in first-seen order."""
    return list(dict.fromkeys(w for line in read_normalized_lines(path, "word list") for w in line.split()))


class BeamDecoder:
    """Lexicon-constrained beam search over (T, V) log-probabilities, with an n-gram LM when one is given."""

    def __init__(self, vocab: Vocabulary, lm: str | Path | None = None, beam_size: int = 50, lm_weight: float = 2.0,
                 word_score: float = 0.0, lexicon: str | Path | None = None) -> None:
        from torchaudio.models.decoder import ctc_decoder

        if lm is None and lexicon is None:
            raise UsageError("beam search needs an LM (--lm), a word list (--lexicon) or both")
        self.boundary = vocab.symbols.index(WORD_SEP)
        lm_words = arpa_words(lm) if lm is not None else []  # checks the file before KenLM reads it
        with contextlib.ExitStack() as stack:
            if lexicon is not None:
                words = read_word_list(lexicon)
                spelled = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "lexicon.txt"
                kept = write_lexicon(words, vocab, spelled)
                if kept == 0:
                    raise DataError(f"{lexicon}: none of its {len(words)} words can be spelled with the model's "
                                    "characters")
                self.words = [w for w in words if set(w) <= set(vocab.symbols[3:])]
            else:
                lm = Path(lm)
                spelled = lm.with_suffix(".lexicon.txt")
                if not spelled.is_file() or spelled.stat().st_mtime < lm.stat().st_mtime:
                    if write_lexicon(lm_words, vocab, spelled) == 0:
                        raise DataError(f"{lm}: none of its words can be spelled with the model's characters")
                self.words = None
            with _native_stderr_on_failure():  # KenLM reports its loading progress on stderr
                self.decoder = ctc_decoder(
                    lexicon=str(spelled), tokens=list(vocab.symbols), lm=None if lm is None else str(lm), nbest=1,
                    beam_size=beam_size, lm_weight=lm_weight, word_score=word_score, blank_token=BLANK,
                    sil_token=WORD_SEP, unk_word=UNK,
                )

    def decode(self, log_probs: Tensor) -> str:
        """The best word sequence for one utterance's (T, V) log-probabilities."""
        import torch

        log_probs = log_probs.float().cpu()
        end = torch.full((1, log_probs.shape[1]), _IMPOSSIBLE)  # (1, V): the word boundary, certainly
        end[0, self.boundary] = 0.0
        hyps = self.decoder(torch.cat([log_probs, end]).contiguous()[None])  # (1, T + 1, V)
        return " ".join(w for w in hyps[0][0].words if w) if hyps and hyps[0] else ""

    def decode_batch(self, log_probs: list[Tensor]) -> list[str]:
        return [self.decode(lp) for lp in log_probs]


@contextlib.contextmanager
def _native_stderr_on_failure() -> Iterator[None]:
    """Holds back what native code writes to file descriptor 2; replays it only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
