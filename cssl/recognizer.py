"""Speech recognition with a fine-tuned checkpoint: the Python API behind ``cssl transcribe``.

    from cssl.recognizer import Recognizer

    rec = Recognizer.from_checkpoint("runs/finetune-tiny/best.pt")
    result = rec.transcribe("clip.flac")          # or a 16 kHz float array / tensor
    print(result.text)
    for w in result.words:
        print(f"{w.start:6.2f} {w.end:6.2f} {w.confidence:.2f} {w.word}")

Audio longer than ``chunk_seconds`` is cut into overlapping windows; each frame's
probabilities come from the window where it is furthest from an edge, so memory stays
bounded and no context is lost at the cuts. Logits are divided by the checkpoint's
calibrated temperature (1 when it was never calibrated) before word confidences are
computed. Decoding is greedy, or beam search with a word n-gram LM (``lm=`` an ARPA file)
and/or restricted to a word list (``lexicon=``: command-and-control vocabularies), or the
most likely of a fixed list of whole utterances (``grammar=``, :mod:`cssl.grammar`; the
words' confidence is then the phrase's posterior among the listed ones).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cssl import SAMPLE_RATE
from cssl.calibration import word_confidences
from cssl.data.audio import load_audio, prepare
from cssl.errors import UsageError
from cssl.loading import load_model
from cssl.model import Wav2Vec2Model
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import CheckpointError


@dataclass
class Word:
    """A recognised word with its time span and confidence."""

    word: str
    """The word (upper case)."""
    start: float
    """Start time in seconds."""
    end: float
    """End time in seconds."""
    confidence: float
    """Calibrated probability of the word's best path, in [0, 1]."""


@dataclass
class Transcript:
    """What :meth:`Recognizer.transcribe` returns."""

    text: str
    """The words joined by spaces."""
    words: list[Word] = field(default_factory=list)
    """Per-word times and confidences."""
    seconds: float = 0.0
    """Audio duration."""


class Recognizer:
    """A fine-tuned model, its vocabulary and temperature, ready to transcribe."""

    def __init__(self, model: Wav2Vec2Model, vocab: Vocabulary, temperature: float = 1.0,
                 normalize: bool = False, chunk_seconds: float = 30.0, overlap_seconds: float = 2.0,
                 device: str | torch.device = "cpu", lm: str | None = None, beam_size: int = 50,
                 lm_weight: float = 2.0, word_score: float = 0.0, precision: str = "no",
                 lexicon: str | None = None, grammar: str | None = None) -> None:
        from cssl.train.runtime import resolve_precision

        self.precision = resolve_precision(precision)
        if self.precision not in ("no", "bf16", "fp16"):
            raise UsageError(f"precision must be no, bf16, fp16 or auto, got {precision!r}")
        self.dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        if self.precision != "no":  # a half-precision copy: autocast would cast every weight on every call
            model = copy.deepcopy(model).to(self.dtype)
        self.model = model.eval().to(device)
        self.vocab = vocab
        self.temperature = temperature
        self.normalize = normalize
        self.device = torch.device(device)
        self.stride = model.feature_extractor.stride
        self.chunk = int(chunk_seconds * SAMPLE_RATE) // self.stride * self.stride
        self.overlap = int(overlap_seconds * SAMPLE_RATE) // (2 * self.stride) * 2 * self.stride
        if self.overlap >= self.chunk:
            raise UsageError("overlap_seconds must be shorter than chunk_seconds")
        self.beam = self.grammar = None
        if grammar is not None:
            if lm is not None or lexicon is not None:
                raise UsageError("a grammar (--grammar) lists whole utterances: it takes no LM (--lm) or word "
                                 "list (--lexicon)")
            from cssl.grammar import GrammarDecoder

            self.grammar = GrammarDecoder.from_file(vocab, grammar)
        elif lm is not None or lexicon is not None:
            from cssl.beam import BeamDecoder

            self.beam = BeamDecoder(vocab, lm, beam_size=beam_size, lm_weight=lm_weight, word_score=word_score,
                                    lexicon=lexicon)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> Recognizer:
        """Rebuilds model, vocabulary and temperature from a fine-tuning checkpoint alone."""
        loaded = load_model(path)
        if loaded.vocab is None:
            raise CheckpointError(f"{path}: {loaded.source} has no CTC head; transcription needs a fine-tuning "
                                  "checkpoint (python -m finetune ... init=this file)")
        return cls(loaded.model, loaded.vocab, loaded.temperature, loaded.normalize, **kwargs)

    @torch.no_grad()
    def log_probs(self, wave: Tensor) -> Tensor:
        """(T, V) calibrated log-probabilities of a mono 16 kHz waveform, chunked when long."""
        pieces = []
        step = self.chunk - self.overlap
        starts = list(range(0, max(1, wave.numel() - self.overlap), step)) if wave.numel() > self.chunk else [0]
        margin = self.overlap // 2 // self.stride
        # Chunk i owns the global frames between the midpoints of its overlaps with its neighbours.
        bounds = [s // self.stride + margin for s in starts[1:]]
        for i, start in enumerate(starts):
            segment = wave[start : start + self.chunk].to(self.device)
            with self._autocast():
                logits, _ = self.model(segment[None], torch.tensor([segment.numel()], device=self.device))
            frames = logits[0].float()  # (T_chunk, V)
            offset = start // self.stride
            first = bounds[i - 1] - offset if i > 0 else 0
            last = bounds[i] - offset if i < len(starts) - 1 else frames.shape[0]
            pieces.append(frames[first:last])
        return (torch.cat(pieces) / self.temperature).log_softmax(dim=-1).cpu()

    def _autocast(self):
        if self.precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def transcribe(self, audio: str | Path | np.ndarray | Tensor, sample_rate: int = SAMPLE_RATE) -> Transcript:
        """Transcribes a file (any format soundfile reads) or a mono array at ``sample_rate``."""
        if isinstance(audio, (str, Path)):
            wave = load_audio(audio, normalize=self.normalize)
        else:
            wave = torch.as_tensor(np.asarray(audio), dtype=torch.float32).flatten()
            wave = prepare(wave, sample_rate, normalize=self.normalize)
        lp = self.log_probs(wave)
        seconds = wave.numel() / SAMPLE_RATE
        frame_s = self.stride / SAMPLE_RATE
        if self.grammar is not None:
            chosen = self.grammar.score(lp)
            words = [replace(w, confidence=chosen.posterior) for w in self._align_words(chosen.text, lp, frame_s)]
            return Transcript(chosen.text, words, seconds)
        if self.beam is not None:
            text = self.beam.decode(lp)
            return Transcript(text, self._align_words(text, lp, frame_s), seconds)
        words = [Word(w.word, w.start * frame_s, w.end * frame_s, w.confidence)
                 for w in word_confidences(lp, self.vocab.symbols, self.vocab.blank)]
        return Transcript(" ".join(w.word for w in words), words, seconds)

    def _align_words(self, text: str, lp: Tensor, frame_s: float) -> list[Word]:
        """Times and confidences for beam output, from the greedy path's words (see :func:`align_words`)."""
        greedy = [Word(w.word, w.start * frame_s, w.end * frame_s, w.confidence)
                  for w in word_confidences(lp, self.vocab.symbols, self.vocab.blank)]
        return align_words(text.split(), greedy)


def align_words(words: list[str], greedy: list[Word]) -> list[Word]:
    """Gives each of ``words`` (a beam-search hypothesis) the time span and confidence of the greedy
    word it aligns to, in order (an edit alignment, so a repeated word takes its own occurrence's times).

    Words the greedy path spelled differently share the span of the greedy words they replace;
    inserted words take the gap between their neighbours. Their confidence is 0: the greedy
    path, whose probabilities the confidences come from, does not contain them.
    """
    out: list[Word] = []
    opcodes = difflib.SequenceMatcher(None, [w.word for w in greedy], words, autojunk=False).get_opcodes()
    for tag, g0, g1, w0, w1 in opcodes:
        if tag == "equal":
            out += [replace(greedy[g0 + k]) for k in range(w1 - w0)]
            continue
        if tag == "delete":
            continue
        if g1 > g0:  # replace: the greedy words' span, split evenly
            start, end = greedy[g0].start, greedy[g1 - 1].end
        else:  # insert: the gap between the neighbours
            start = greedy[g0 - 1].end if g0 > 0 else 0.0
            end = greedy[g0].start if g0 < len(greedy) else start
        width = (end - start) / (w1 - w0)
        out += [Word(words[w0 + k], start + k * width, start + (k + 1) * width, 0.0) for k in range(w1 - w0)]
    return out
