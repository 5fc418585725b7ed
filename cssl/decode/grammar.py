"""Closed-set decoding: the utterance is exactly one of a list of phrases (command and control).

A grammar file has one allowed utterance per line (``yes``, ``turn off the light``): the
same constraint as a JSGF grammar ``<command> = yes | no | ... ;``. Each phrase is scored
by its CTC log-likelihood, the forward algorithm summed over every alignment of its
characters to the frames (exact, unlike a beam, which may prune the right phrase or end
on none); the decoder returns the most likely phrase and its posterior probability under
a uniform prior over the list (the softmax of the log-likelihoods), a confidence that a
caller can threshold to reject out-of-grammar speech.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from cssl.decode.beam import read_lines
from cssl.text.normalize import normalize_text
from cssl.text.vocab import Vocabulary
from cssl.utils.errors import DataError


@dataclass
class GrammarResult:
    """The chosen phrase of one utterance."""

    text: str
    """The most likely phrase (normalised, upper case)."""
    posterior: float
    """Its probability among the listed phrases (uniform prior), in [0, 1]."""
    log_likelihoods: Tensor
    """(P,) CTC log-likelihood of every phrase, in the grammar's order (-inf: too long for the audio)."""


def read_grammar(path: str | Path) -> tuple[list[str], list[str]]:
    """The distinct normalised non-empty lines of a grammar file, in first-seen order, and the lines
    nothing is left of once normalised (another script)."""
    raw = read_lines(path, "grammar")
    normalized = [normalize_text(line) for line in raw]
    emptied = [line.strip() for line, norm in zip(raw, normalized) if line.strip() and not norm]
    return list(dict.fromkeys(line for line in normalized if line)), emptied


def read_phrases(path: str | Path) -> list[str]:
    """The phrases of a grammar file (:func:`read_grammar`)."""
    return read_grammar(path)[0]


class GrammarDecoder:
    """Picks, for (T, V) log-probabilities, the phrase of a fixed list with the highest CTC likelihood."""

    def __init__(self, vocab: Vocabulary, phrases: list[str], source: str = "grammar") -> None:
        chars = set(vocab.symbols[3:]) | {" "}
        self.phrases = [p for p in phrases if set(p) <= chars]
        if not self.phrases:
            raise DataError(f"{source}: none of its {len(phrases)} phrases can be spelled with the model's characters")
        self.dropped = [p for p in phrases if not set(p) <= chars]
        """Phrases left out: they use characters the model cannot write."""
        self.blank = vocab.blank
        encoded = [vocab.encode(p) for p in self.phrases]
        self.lengths = torch.tensor([len(e) for e in encoded])  # (P,)
        self.targets = torch.zeros(len(encoded), int(self.lengths.max()), dtype=torch.long)  # (P, S) padded
        for i, ids in enumerate(encoded):
            self.targets[i, : len(ids)] = torch.as_tensor(ids)

    @classmethod
    def from_file(cls, vocab: Vocabulary, path: str | Path) -> GrammarDecoder:
        phrases, emptied = read_grammar(path)
        if not phrases:
            raise DataError(f"{path}: the grammar lists no phrase (one allowed utterance per line)")
        decoder = cls(vocab, phrases, source=str(path))
        decoder.dropped += emptied  # nothing left to spell
        return decoder

    def log_likelihoods(self, log_probs: Tensor) -> Tensor:
        """(P,) CTC log-likelihood of every phrase given one utterance's (T, V) log-probabilities."""
        lp = log_probs.float().cpu()
        count, frames = len(self.phrases), lp.shape[0]
        # (T, V) -> (T, P, V): the same frames scored against every phrase at once.
        batch = lp[:, None, :].expand(frames, count, lp.shape[1])
        nll = torch.nn.functional.ctc_loss(batch, self.targets, torch.full((count,), frames), self.lengths,
                                           blank=self.blank, reduction="none", zero_infinity=False)  # (P,)
        return -nll

    def choose(self, loglik: Tensor) -> GrammarResult:
        """The phrase with the highest of the (P,) log-likelihoods ``loglik``, with its posterior."""
        if not torch.isfinite(loglik).any():  # the audio is too short for every phrase
            return GrammarResult("", 0.0, loglik)
        best = int(loglik.argmax())
        posterior = float(loglik.softmax(dim=0)[best])
        return GrammarResult(self.phrases[best], posterior, loglik)

    def score(self, log_probs: Tensor) -> GrammarResult:
        """The best phrase for one utterance's (T, V) log-probabilities."""
        return self.choose(self.log_likelihoods(log_probs))

    def decode(self, log_probs: Tensor) -> str:
        return self.score(log_probs).text
