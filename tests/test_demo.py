"""The demo's phases end to end at a toy size: corpus, pretraining, report and plot."""

from __future__ import annotations

from pathlib import Path

from cssl.demo import main


def test_demo_runs_end_to_end_and_reuses_the_corpus(tmp_path: Path, capsys) -> None:
    args = ["--out", str(tmp_path), "--hours", "0.02", "--pretrain-minutes", "5", "--pretrain-steps", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "synthesized" in first
    report = (tmp_path / "report.md").read_text()
    assert "| unlabeled |" in report and "Updates: 3" in report
    png = (tmp_path / "pretrain_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(args) == 0
    assert "reused the cached corpus" in capsys.readouterr().out
