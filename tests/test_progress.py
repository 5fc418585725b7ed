"""The one progress display: plain lines in a log, a tqdm bar on a terminal; training records either way."""

from __future__ import annotations

import io

import pytest

from cssl.train.progress import Progress
from cssl.utils import progress as progress_module
from cssl.utils.progress import ProgressLine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_a_log_gets_a_line_every_ten_seconds_and_one_at_the_end(clock: Clock) -> None:
    log = io.StringIO()
    meter = ProgressLine("evaluate", 400, stream=log)
    clock.now += 5
    meter.update(100, "WER so far 0.250")
    assert log.getvalue() == ""  # under ten seconds: nothing yet
    clock.now += 15  # 20 s for 200 utterances: 10 per second, 20 s left
    meter.update(200, "WER so far 0.231")
    first = log.getvalue().splitlines()
    assert first == ["evaluate:  50% 200/400 [00:20<00:20, 10.00utterances/s, WER so far 0.231]"]
    meter.close("WER 0.240")
    last = log.getvalue().splitlines()[-1]
    assert last.startswith("evaluate:  50% 200/400 [00:20<00:20") and last.endswith("WER 0.240]")
    assert "\r" not in log.getvalue()


def test_a_resumed_loop_counts_its_rate_from_where_it_started(clock: Clock) -> None:
    meter = ProgressLine("train", 1000, unit="updates", stream=io.StringIO(), initial=600)
    clock.now += 40
    meter.update(700)  # 100 updates in 40 s, not 700
    assert "2.50updates/s" in meter.line() and "<02:00" in meter.line()


def test_a_terminal_gets_a_bar_redrawn_in_place_with_records_above_it() -> None:
    screen = Terminal()
    meter = ProgressLine("probe: features", 10, stream=screen)
    meter.write("a record")
    meter.update(10, "done")
    meter.close()
    text = screen.getvalue()
    assert "\r" in text and "a record\n" in text
    assert "probe: features: 100%" in text and "10/10" in text and "done" in text


def test_disabled_prints_nothing(clock: Clock) -> None:
    log = io.StringIO()
    meter = ProgressLine("x", 3, stream=log, enabled=False)
    clock.now += 100
    meter.update(3)
    meter.write("record")
    meter.close()
    assert log.getvalue() == ""


def test_training_logs_one_record_per_interval_and_no_bar_in_a_log(tmp_path, capsys) -> None:
    run = Progress(tmp_path, 10, tensorboard=False)
    run.add_audio(8.0)
    run.log(5, {"loss": 2.5, "accuracy": 0.25})
    run.message("free text")
    run.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1] == "free text"
    assert lines[0].startswith("[train] step 5/10 (50%) loss 2.5 accuracy 0.25 | ") and "audio s/s | eta" in lines[0]
