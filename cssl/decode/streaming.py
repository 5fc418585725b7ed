"""Streaming recognition: audio in chunks as it arrives, partial results while it comes, a final one at the end.

    stream = Recognizer.from_checkpoint("best.pt").stream()
    for chunk in microphone():                 # 16 kHz mono float chunks, any size (20-320 ms typical)
        partial = stream.accept(chunk)
        print(partial.stable, "|", partial.text[len(partial.stable):])
    final = stream.finish()                    # a Transcript: text, word times, confidences

The context tower attends both ways, so a frame's output depends on audio after it. The stream therefore
runs the model over sliding windows: every ``update_seconds`` of new audio it runs one window made of
``left_seconds`` of audio before the first frame not yet committed, and everything received since. Frames
whose receptive field ends at least ``right_seconds`` before the newest sample are **committed**: their
log-probabilities are final and no later audio changes them; the frames after them are **tentative**,
decoded for the partial result and decoded again when more audio arrives. ``finish`` runs the last
window, commits every frame and decodes the whole stream with the recognizer's decoder (greedy, beam with
LM or lexicon, or grammar), exactly as :meth:`Recognizer.decode` decodes a file.

Memory stays bounded: the stream keeps the audio of the last window only (``left_seconds`` plus the
uncommitted part), and the committed log-probabilities (V floats per 20 ms frame). Each update costs one
model run over at most ``left_seconds + right_seconds + update_seconds`` plus a receptive field of audio;
the latency from the end of the audio to the final result is one such run and the decoding.

With ``right_seconds`` longer than the stream nothing is committed before ``finish``, whose window then
holds the whole stream (when ``left_seconds`` is no shorter): the result equals :meth:`Recognizer.transcribe`
of the same audio (windows up to ``chunk_seconds``). Models trained on normalised audio
(``data.normalize``) get each window normalised with the mean and variance of all audio received so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from cssl import SAMPLE_RATE
from cssl.decode.transcript import Transcript
from cssl.score.calibration import word_confidences
from cssl.utils.errors import UsageError


@dataclass
class PartialResult:
    """What :meth:`RecognitionStream.accept` returns after each chunk."""

    text: str
    """Best guess of everything heard so far (greedy over committed and tentative frames)."""
    stable: str
    """The words no later audio changes (whole words within the committed frames); a prefix of ``text``."""
    seconds: float
    """Audio received so far."""
    committed_seconds: float = 0.0
    """Audio whose frames are committed."""
    updated: bool = False
    """Whether this chunk ran the model (otherwise the previous result is repeated)."""


@dataclass
class _Window:
    """The audio kept for the next window: samples from ``origin`` (a global sample index) on."""

    origin: int = 0
    samples: list[Tensor] = field(default_factory=list)

    def audio(self) -> Tensor:
        return torch.cat(self.samples) if self.samples else torch.zeros(0)


class RecognitionStream:
    """One stream of audio through a :class:`~cssl.decode.recognizer.Recognizer` (see the module's text)."""

    def __init__(self, recognizer, left_seconds: float = 4.0, right_seconds: float = 0.8,
                 update_seconds: float = 0.4) -> None:
        if left_seconds < 0 or right_seconds < 0 or update_seconds <= 0:
            raise UsageError(f"stream contexts must be positive (left {left_seconds}, right {right_seconds}, "
                             f"update {update_seconds} seconds)")
        if recognizer.grammar is not None and recognizer.speeds != (1.0,):
            raise UsageError("a stream decodes the audio as it comes: it cannot rescore it at several speeds "
                             "(speeds=); stream with speeds (1.0,) or transcribe whole files")
        self.rec = recognizer
        self.stride = recognizer.stride
        self.left = int(left_seconds * SAMPLE_RATE) // self.stride * self.stride
        self.right = int(right_seconds * SAMPLE_RATE)
        self.update = max(1, int(update_seconds * SAMPLE_RATE))
        self.field = recognizer.receptive_field
        self.window = _Window()
        self.received = 0  # samples accepted
        self.pending = 0  # samples accepted since the last model run
        self.committed: list[Tensor] = []  # (frames, V) log-probabilities, in order
        self.n_committed = 0
        self.closed: list[str] = []  # greedy words that end inside the committed frames: they never change
        self.open = torch.zeros(0, len(recognizer.vocab))  # (frames, V) committed after the last closed word
        self.tentative = torch.zeros(0, len(recognizer.vocab))  # (frames, V) after the committed ones
        self.moments = torch.zeros(2, dtype=torch.float64)  # running sum and sum of squares (normalize)
        self.last = PartialResult("", "", 0.0)
        self.finished = False

    def accept(self, chunk: np.ndarray | Tensor) -> PartialResult:
        """Takes the next chunk of 16 kHz mono samples; returns the partial result (recomputed once at least
        ``update_seconds`` of audio arrived since the last run, else the previous one)."""
        if self.finished:
            raise UsageError("this stream is finished; start a new one with Recognizer.stream()")
        chunk = torch.as_tensor(np.asarray(chunk), dtype=torch.float32).flatten()
        if chunk.numel() and not bool(torch.isfinite(chunk).all()):
            raise UsageError("a stream chunk holds NaN or infinite samples")
        due = self.runs_model(chunk.numel())
        self.window.samples.append(chunk)
        self.received += chunk.numel()
        self.pending += chunk.numel()
        self.moments += torch.stack([chunk.double().sum(), chunk.double().square().sum()])
        if due:
            self._run(final=False)
            self.last = self._partial(updated=True)
        else:
            self.last = PartialResult(self.last.text, self.last.stable, self.received / SAMPLE_RATE,
                                      self.last.committed_seconds)
        return self.last

    def runs_model(self, samples: int) -> bool:
        """Whether accepting ``samples`` more runs the model (at least ``update_seconds`` of new audio and one
        receptive field in all); otherwise the chunk is only buffered."""
        return self.pending + samples >= self.update and self.received + samples >= self.field

    def finish(self) -> Transcript:
        """Runs the last window, commits every frame and returns the final :class:`Transcript` of the
        whole stream."""
        if self.finished:
            raise UsageError("this stream is finished already")
        self.finished = True
        if self.received == 0:
            return Transcript("", [], 0.0)
        self._run(final=True)
        lp = torch.cat(self.committed) if self.committed else self.tentative
        result = self.rec.decode(lp)
        result.seconds = self.received / SAMPLE_RATE
        return result

    def _run(self, final: bool) -> None:
        """One model run over the kept window; commits the frames it settles."""
        audio = self.window.audio()
        if self.rec.normalize:
            audio = self._normalised(audio)
        lp = self.rec.window_log_probs(audio)  # (T_window, V), frame 0 = global frame origin / stride
        first = self.window.origin // self.stride
        end = self.received
        # frame f sees samples [f * stride, f * stride + field): settled once right context follows it
        settled = self.n_committed + lp.shape[0] if final else (end - self.field - self.right) // self.stride + 1
        settled = min(settled, first + lp.shape[0])
        if settled > self.n_committed:
            self.committed.append(lp[self.n_committed - first : settled - first])
            self.n_committed = settled
            self._close_words(self.committed[-1])
        self.tentative = lp[self.n_committed - first :]
        self.pending = 0
        self._trim()

    def _trim(self) -> None:
        """Drops audio no later window needs: before ``left_seconds`` ahead of the first uncommitted frame."""
        keep_from = max(0, self.n_committed * self.stride - self.left)  # a multiple of the stride
        audio = self.window.audio()
        drop = min(keep_from - self.window.origin, audio.numel())
        if drop > 0:
            self.window = _Window(self.window.origin + drop, [audio[drop:]])

    def _normalised(self, audio: Tensor) -> Tensor:
        mean = self.moments[0] / self.received
        var = (self.moments[1] / self.received - mean**2).clamp(min=0)
        return ((audio.double() - mean) / torch.sqrt(var + 1e-7)).float()

    def _close_words(self, frames: Tensor) -> None:
        """Adds newly committed ``frames``; the words they close (a word separator or a later word follows them
        inside the committed frames) join ``closed``, and the open tail starts after the last one's end, so
        each update decodes only the frames after it (greedy decoding restarts cleanly after a separator)."""
        self.open = torch.cat([self.open, frames])
        words = word_confidences(self.open, self.rec.vocab.symbols, self.rec.vocab.blank)
        done = [w for w in words if w.end < self.open.shape[0]]
        if done:
            self.closed += [w.word for w in done]
            self.open = self.open[done[-1].end + 1 :]

    def _partial(self, updated: bool) -> PartialResult:
        tail = word_confidences(torch.cat([self.open, self.tentative]), self.rec.vocab.symbols, self.rec.vocab.blank)
        text = " ".join([*self.closed, *(w.word for w in tail)])
        return PartialResult(text, " ".join(self.closed), self.received / SAMPLE_RATE,
                             self.n_committed * self.stride / SAMPLE_RATE, updated)


@dataclass
class StreamedFile:
    """What :func:`stream_audio` returns."""

    transcript: Transcript
    """The final transcript."""
    partials: list[PartialResult]
    """Every partial result that changed the text, in order."""
    latency: float
    """Seconds from the last chunk to the final result (the last window's model run and the decoding)."""


def stream_audio(stream: RecognitionStream, wave: Tensor, chunk_seconds: float = 0.16, realtime: bool = False,
                 on_partial=None) -> StreamedFile:
    """Feeds ``wave`` (16 kHz) to ``stream`` in chunks as if it arrived live (``realtime``: paced by the clock;
    otherwise as fast as the stream takes it); ``on_partial`` sees each partial result that changed."""
    import time

    chunk = max(1, int(chunk_seconds * SAMPLE_RATE))
    partials: list[PartialResult] = []
    clock = time.monotonic()
    for start in range(0, wave.numel(), chunk):
        if realtime:
            time.sleep(max(0.0, clock + start / SAMPLE_RATE - time.monotonic()))
        partial = stream.accept(wave[start : start + chunk])
        if partial.updated and (not partials or partial.text != partials[-1].text):
            partials.append(partial)
            if on_partial is not None:
                on_partial(partial)
    if realtime:
        time.sleep(max(0.0, clock + wave.numel() / SAMPLE_RATE - time.monotonic()))
    end = time.perf_counter()
    transcript = stream.finish()
    return StreamedFile(transcript, partials, time.perf_counter() - end)
