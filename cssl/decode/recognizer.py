"""Speech recognition with a fine-tuned checkpoint: the Python API behind ``cssl transcribe``.

    from cssl.decode.recognizer import Recognizer

    rec = Recognizer.from_checkpoint("runs/finetune-tiny/best.pt")
    result = rec.transcribe("clip.flac")          # or a 16 kHz float array / tensor
    print(result.text)
    for w in result.words:
        print(f"{w.start:6.2f} {w.end:6.2f} {w.confidence:.2f} {w.word}")

Audio longer than ``chunk_seconds`` is cut into overlapping windows; each frame's
probabilities come from the window where it is furthest from an edge, so memory stays
bounded and no context is lost at the cuts. Logits are divided by the checkpoint's
calibrated temperature (1 when it was never calibrated) before word confidences are
computed. Several checkpoints of one vocabulary decode as an ensemble (``ensemble=``,
``--ensemble`` on the command line, like fairseq's ``--path a.pt:b.pt``): each frame's
distribution is the mean of the members' calibrated probabilities (a mixture, which tolerates
CTC spikes that the members place a frame or two apart; averaging log-probabilities would veto
them). Decoding is greedy, or beam search with a word n-gram LM (``lm=`` an ARPA file) and/or
restricted to a word list (``lexicon=``: command-and-control vocabularies), or the
most likely of a fixed list of whole utterances (``grammar=``, :mod:`cssl.decode.grammar`; the
words' confidence is then the phrase's posterior among the listed ones). With a grammar, ``speeds=``
also scores the audio played faster and slower (speed perturbation, as in training) and picks the
phrase with the highest mean log-likelihood over the warps: test-time augmentation that hears an
unseen voice as a range of vocal-tract lengths and speaking rates (like VTLN's search over warp factors).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cssl import SAMPLE_RATE
from cssl.convert.loading import load_model
from cssl.data.audio import load_audio, prepare
from cssl.decode.transcript import Transcript, Word
from cssl.deploy.onnx_model import OnnxCTCModel
from cssl.model import Wav2Vec2Model
from cssl.model.ctc import sequence_log_likelihood
from cssl.score.calibration import word_confidences
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import CheckpointError
from cssl.utils.errors import UsageError

AcousticModel = Wav2Vec2Model | OnnxCTCModel
"""What a recognizer runs: a fine-tuned model, or an exported one (``cssl export``) run by ONNX Runtime."""


class Recognizer:
    """A fine-tuned model, its vocabulary and temperature, ready to transcribe."""

    def __init__(self, model: AcousticModel, vocab: Vocabulary, temperature: float = 1.0,
                 normalize: bool = False, chunk_seconds: float = 30.0, overlap_seconds: float = 2.0,
                 device: str | torch.device = "cpu", lm: str | None = None, beam_size: int = 50,
                 lm_weight: float = 2.0, word_score: float = 0.0, precision: str = "no",
                 lexicon: str | None = None, grammar: str | None = None,
                 ensemble: Sequence[tuple[AcousticModel, float]] = (), speeds: Sequence[float] = (1.0,)) -> None:
        """``model`` (a fine-tuned model, or an exported one run by ONNX Runtime) with its ``temperature``, and any further ``ensemble`` members as (model, temperature)
        pairs: models of the same vocabulary and frame rate whose probabilities are averaged; ``speeds``:
        with a ``grammar``, the speed factors the audio is scored at (``f > 1`` plays faster)."""
        from cssl.train.runtime import resolve_precision

        self.precision = resolve_precision(precision)
        if self.precision not in ("no", "bf16", "fp16"):
            raise UsageError(f"precision must be no, bf16, fp16 or auto, got {precision!r}")
        self.dtype = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        self.device = torch.device(device)
        # (model, temperature) of every model whose probabilities are averaged; the first is ``model``.
        self.members = [(self._prepared(m), t) for m, t in [(model, temperature), *ensemble]]
        self.model = self.members[0][0]
        self.vocab = vocab
        self.temperature = temperature
        self.normalize = normalize
        self.stride, self.receptive_field = _frames(model)
        strides = {_frames(m)[0] for m, _ in self.members}
        if len(strides) > 1:
            raise UsageError(f"ensemble members have different frame strides {sorted(strides)} (samples per "
                             "frame): their frames do not line up; ensemble models of one architecture")
        self.chunk = int(chunk_seconds * SAMPLE_RATE) // self.stride * self.stride
        self.overlap = int(overlap_seconds * SAMPLE_RATE) // (2 * self.stride) * 2 * self.stride
        if self.overlap >= self.chunk:
            raise UsageError("overlap_seconds must be shorter than chunk_seconds")
        self.speeds = tuple(float(f) for f in speeds)
        if not self.speeds or any(not f > 0 for f in self.speeds):
            raise UsageError(f"speeds must be positive speed factors, got {list(speeds)}")
        if self.speeds != (1.0,) and grammar is None:
            raise UsageError("speeds (--speeds) score whole phrases at several speeds: they need a grammar "
                             "(--grammar); greedy and beam search decode the audio as it is")
        self.beam = self.grammar = None
        if grammar is not None:
            if lm is not None or lexicon is not None:
                raise UsageError("a grammar (--grammar) lists whole utterances: it takes no LM (--lm) or word "
                                 "list (--lexicon)")
            from cssl.decode.grammar import GrammarDecoder

            self.grammar = GrammarDecoder.from_file(vocab, grammar)
        elif lm is not None or lexicon is not None:
            from cssl.decode.beam import BeamDecoder

            self.beam = BeamDecoder(vocab, lm, beam_size=beam_size, lm_weight=lm_weight, word_score=word_score,
                                    lexicon=lexicon)

    def _prepared(self, model: AcousticModel) -> AcousticModel:
        if isinstance(model, OnnxCTCModel):
            if self.precision != "no" or self.device.type != "cpu":
                raise UsageError(f"{model.path}: an ONNX model runs in its own precision on the CPU (ONNX Runtime); "
                                 "leave precision and device at their defaults")
            return model
        if self.precision != "no":  # a half-precision copy: autocast would cast every weight on every call
            model = copy.deepcopy(model).to(self.dtype)
        return model.eval().to(self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, ensemble: Sequence[str | Path] = (), **kwargs) -> Recognizer:
        """Rebuilds model, vocabulary and temperature from a fine-tuning checkpoint alone, or from an ONNX file
        written by ``cssl export`` (run by ONNX Runtime); ``ensemble`` names further models (same vocabulary
        and input normalization) to average with it."""
        first = _fine_tuned(path)
        members = []
        for other in ensemble:
            loaded = _fine_tuned(other)
            if loaded.vocab.symbols != first.vocab.symbols:
                raise UsageError(f"{other}: its vocabulary differs from {path}'s ({''.join(loaded.vocab.symbols)!r} "
                                 f"against {''.join(first.vocab.symbols)!r}); an ensemble needs one output alphabet")
            if loaded.normalize != first.normalize:
                raise UsageError(f"{other}: trained with data.normalize={loaded.normalize}, {path} with "
                                 f"{first.normalize}; ensemble models that read the audio the same way")
            members.append((loaded.model, loaded.temperature))
        return cls(first.model, first.vocab, first.temperature, first.normalize, ensemble=members, **kwargs)

    @torch.no_grad()
    def log_probs(self, wave: Tensor) -> Tensor:
        """(T, V) calibrated log-probabilities of a mono 16 kHz waveform, chunked when long; for an
        ensemble, the log of the members' mean probabilities."""
        return _mixture([self._log_probs(model, temperature, wave) for model, temperature in self.members])

    @torch.no_grad()
    def window_log_probs(self, wave: Tensor) -> Tensor:
        """(T, V) calibrated log-probabilities of one window of audio, run whole (no chunking): the model
        sees exactly ``wave``. Streaming recognition (:meth:`stream`) runs its windows through this."""
        return _mixture([(self._logits(model, wave) / temperature).log_softmax(dim=-1).cpu()
                         for model, temperature in self.members])

    def stream(self, left_seconds: float = 4.0, right_seconds: float = 0.8, update_seconds: float = 0.4):
        """A :class:`~cssl.decode.streaming.RecognitionStream`: feed it 16 kHz audio as it arrives
        (``accept``), read partial results, and ``finish`` for the final one."""
        from cssl.decode.streaming import RecognitionStream

        return RecognitionStream(self, left_seconds, right_seconds, update_seconds)

    def _logits(self, model: AcousticModel, segment: Tensor) -> Tensor:
        """(T, V) fp32 logits of one model over one segment, run whole."""
        segment = segment.to(self.device)
        with self._autocast():
            logits, _ = model(segment[None], torch.tensor([segment.numel()], device=self.device))
        return logits[0].float()

    def _log_probs(self, model: AcousticModel, temperature: float, wave: Tensor) -> Tensor:
        """(T, V) calibrated log-probabilities of one model."""
        pieces = []
        step = self.chunk - self.overlap
        starts = list(range(0, max(1, wave.numel() - self.overlap), step)) if wave.numel() > self.chunk else [0]
        margin = self.overlap // 2 // self.stride
        # Chunk i owns the global frames between the midpoints of its overlaps with its neighbours.
        bounds = [s // self.stride + margin for s in starts[1:]]
        for i, start in enumerate(starts):
            frames = self._logits(model, wave[start : start + self.chunk])  # (T_chunk, V)
            offset = start // self.stride
            first = bounds[i - 1] - offset if i > 0 else 0
            last = bounds[i] - offset if i < len(starts) - 1 else frames.shape[0]
            pieces.append(frames[first:last])
        return (torch.cat(pieces) / temperature).log_softmax(dim=-1).cpu()

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
        return self.decode(self.log_probs(wave), wave)

    def decode(self, lp: Tensor, wave: Tensor | None = None) -> Transcript:
        """The transcript of (T, V) calibrated log-probabilities with this recognizer's decoder (greedy, beam
        with LM/lexicon, or grammar); ``wave``, the audio they come from, is needed only by ``speeds``."""
        seconds = lp.shape[0] * self.stride / SAMPLE_RATE if wave is None else wave.numel() / SAMPLE_RATE
        frame_s = self.stride / SAMPLE_RATE
        if self.grammar is not None:
            chosen = self.grammar.choose(self._grammar_log_likelihoods(wave, lp))
            words = [replace(w, confidence=chosen.posterior) for w in self._align_words(chosen.text, lp, frame_s)]
            text = chosen.text
        elif self.beam is not None:
            text = self.beam.decode(lp)
            words = self._align_words(text, lp, frame_s)
        else:
            words = [Word(w.word, w.start * frame_s, w.end * frame_s, w.confidence)
                     for w in word_confidences(lp, self.vocab.symbols, self.vocab.blank)]
            text = " ".join(w.word for w in words)
        return Transcript(text, words, seconds, self._per_symbol(text, lp))

    def _per_symbol(self, text: str, lp: Tensor) -> float | None:
        """CTC log-likelihood of ``text`` per symbol given (T, V) log-probabilities; None when empty."""
        ids = self.vocab.encode(text)
        return sequence_log_likelihood(lp, ids, self.vocab.blank) / len(ids) if ids else None

    def _grammar_log_likelihoods(self, wave: Tensor | None, lp: Tensor) -> Tensor:
        """(P,) the grammar phrases' CTC log-likelihoods, averaged over ``self.speeds`` (``lp``: at speed 1)."""
        from cssl.data.augment import speed_perturb

        if wave is None and self.speeds != (1.0,):
            raise UsageError("scoring at several speeds (speeds=) needs the audio, not only its log-probabilities")
        each = [self.grammar.log_likelihoods(lp if f == 1.0 else self.log_probs(speed_perturb(wave, f)))
                for f in self.speeds]
        return torch.stack(each).mean(dim=0)  # (S, P) -> (P,)

    def _align_words(self, text: str, lp: Tensor, frame_s: float) -> list[Word]:
        """Times and confidences for beam output, from the greedy path's words (see :func:`align_words`)."""
        greedy = [Word(w.word, w.start * frame_s, w.end * frame_s, w.confidence)
                  for w in word_confidences(lp, self.vocab.symbols, self.vocab.blank)]
        return align_words(text.split(), greedy)


@dataclass
class _Member:
    """A recognizer's model with what decoding needs from its file."""

    model: AcousticModel
    vocab: Vocabulary
    temperature: float
    normalize: bool


def _fine_tuned(path: str | Path) -> _Member:
    if Path(path).suffix == ".onnx":
        exported = OnnxCTCModel(path)
        return _Member(exported, exported.meta.vocab, exported.meta.temperature, exported.meta.normalize)
    loaded = load_model(path)
    if loaded.vocab is None:
        raise CheckpointError(f"{path}: {loaded.source} has no CTC head; transcription needs a fine-tuning "
                              "checkpoint (cssl finetune ... init=this file)")
    return _Member(loaded.model, loaded.vocab, loaded.temperature, loaded.normalize)


def _mixture(each: list[Tensor]) -> Tensor:
    """The log of the mean probability of ensemble members' (T, V) log-probabilities."""
    if len(each) == 1:
        return each[0]
    frames = {lp.shape[0] for lp in each}
    if len(frames) > 1:
        raise UsageError(f"ensemble members give {sorted(frames)} frames for one waveform: their feature "
                         "encoders differ; ensemble models of one architecture")
    return torch.logsumexp(torch.stack(each), dim=0) - math.log(len(each))  # (K, T, V) -> (T, V)


def _frames(model: AcousticModel) -> tuple[int, int]:
    """The model's frame geometry: samples between output frames, and samples one frame sees."""
    encoder = model if isinstance(model, OnnxCTCModel) else model.feature_extractor
    return encoder.stride, encoder.receptive_field


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
