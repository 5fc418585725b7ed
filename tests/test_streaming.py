"""Streaming recognition (Recognizer.stream): partial results while audio arrives, a final one that
equals whole-file decoding when the stream's window holds everything, bounded memory otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cssl.decode.recognizer import Recognizer
from cssl.utils.errors import UsageError
from tests.test_recognizer import checkpoint


def recognizer(tmp_path: Path, **kwargs) -> Recognizer:
    rec = Recognizer.from_checkpoint(checkpoint(tmp_path, text="abc def ghi", prefer_a=False), **kwargs)
    with torch.no_grad():  # a head whose best symbol changes from frame to frame: varied transcripts
        torch.manual_seed(5)
        rec.model.aux.weight.normal_(0, 0.5)
        rec.model.aux.bias.zero_()
        rec.model.aux.bias[rec.vocab.blank] = 1.0
        rec.model.aux.bias[rec.vocab.word_sep] = 2.5  # words end now and then
    return rec


def feed(stream, wave: torch.Tensor, chunk: int) -> list:
    return [stream.accept(wave[i : i + chunk].numpy()) for i in range(0, wave.numel(), chunk)]


def test_a_window_that_holds_the_whole_stream_gives_the_whole_file_result(tmp_path: Path) -> None:
    rec = recognizer(tmp_path)
    torch.manual_seed(0)
    wave = torch.randn(16000 * 3 + 123) * 0.3
    whole = rec.transcribe(wave)
    stream = rec.stream(left_seconds=10, right_seconds=10, update_seconds=0.3)
    partials = feed(stream, wave, 320)  # 20 ms chunks
    final = stream.finish()
    assert whole.text and final.text == whole.text
    assert [(w.word, w.start, w.end) for w in final.words] == [(w.word, w.start, w.end) for w in whole.words]
    assert [w.confidence for w in final.words] == pytest.approx([w.confidence for w in whole.words], abs=1e-5)
    assert final.seconds == pytest.approx(wave.numel() / 16000)
    assert all(p.stable == "" for p in partials)  # 10 s of right context: nothing committed early
    assert sum(p.updated for p in partials) == pytest.approx(wave.numel() / 4800, abs=1)  # one run per 0.3 s


def test_committed_text_never_changes_and_prefixes_the_final_greedy_result(tmp_path: Path) -> None:
    rec = recognizer(tmp_path)
    torch.manual_seed(1)
    wave = torch.randn(16000 * 8) * 0.3
    stream = rec.stream(left_seconds=1.0, right_seconds=0.5, update_seconds=0.25)
    partials = feed(stream, wave, 2560)  # 160 ms chunks
    final = stream.finish()
    stables = [p.stable for p in partials]
    assert stables[-1], "with 0.5 s of right context most of 8 s is committed before the end"
    for earlier, later in zip(stables, stables[1:]):
        assert later.startswith(earlier)
    assert final.text.startswith(stables[-1])
    assert all(p.text.startswith(p.stable) for p in partials)
    assert partials[-1].committed_seconds > 6.5
    # every frame of the stream is decoded exactly once, as many as the whole file has
    assert stream.n_committed == rec.log_probs(wave).shape[0]


def test_streamed_frames_come_from_windows_with_the_promised_context(tmp_path: Path) -> None:
    """Reference: a frame committed when ``r`` samples had arrived equals the model's output over the audio
    from ``left`` seconds before the first uncommitted frame up to ``r`` (the documented window)."""
    rec = recognizer(tmp_path)
    torch.manual_seed(2)
    wave = torch.randn(16000 * 5) * 0.3
    left, right, update = 1.0, 0.5, 0.5
    stream = rec.stream(left_seconds=left, right_seconds=right, update_seconds=update)
    reference, done = [], 0
    for i in range(0, wave.numel(), 8000):
        stream.accept(wave[i : i + 8000].numpy())
        received = min(i + 8000, wave.numel())
        start = max(0, done * 320 - int(left * 16000))
        lp = rec.window_log_probs(wave[start:received])
        settled = min((received - 400 - int(right * 16000)) // 320 + 1, start // 320 + lp.shape[0])
        if settled > done:
            reference.append(lp[done - start // 320 : settled - start // 320])
            done = settled
    assert stream.n_committed == done > 0
    assert torch.allclose(torch.cat(stream.committed), torch.cat(reference), atol=1e-5)


def test_a_long_stream_keeps_bounded_audio(tmp_path: Path) -> None:
    rec = recognizer(tmp_path)
    stream = rec.stream(left_seconds=1.0, right_seconds=0.5, update_seconds=0.4)
    chunk = torch.randn(16000) * 0.3
    longest = 0
    for _ in range(20):  # 20 s
        stream.accept(chunk.numpy())
        longest = max(longest, stream.window.audio().numel())
    assert longest <= 16000 * (1.0 + 0.5 + 1.0) + 400 + 320  # left + right + one chunk + a field + a frame
    assert stream.finish().seconds == pytest.approx(20.0)


def test_streams_refuse_misuse(tmp_path: Path) -> None:
    rec = recognizer(tmp_path)
    stream = rec.stream()
    assert stream.finish().text == ""  # nothing heard: an empty result, not an error
    with pytest.raises(UsageError, match="finished"):
        stream.accept(torch.zeros(100).numpy())
    with pytest.raises(UsageError, match="NaN"):
        rec.stream().accept(torch.tensor([0.0, float("nan")]).numpy())
    with pytest.raises(UsageError, match="positive"):
        rec.stream(update_seconds=0)
