"""The demo's phases end to end at a toy size: corpus, pretraining, fine-tuning, evaluation, report and plots."""

from __future__ import annotations

from pathlib import Path

from cssl.demo import main


def test_demo_runs_end_to_end_and_reuses_the_corpus(tmp_path: Path, capsys) -> None:
    args = ["--out", str(tmp_path), "--hours", "0.02", "--pretrain-minutes", "5", "--pretrain-steps", "3",
            "--finetune-steps", "2"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "synthesized" in first
    report = (tmp_path / "report.md").read_text()
    assert "| unlabeled |" in report and "Updates: 3" in report
    for name in ("pretrain_curves", "finetune_curves", "reliability_pretrained", "reliability_scratch",
                 "reliability_scratch-frozen"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    rows = [line for line in report.splitlines() if line.startswith("| pretrained |") or line.startswith("| scratch")]
    assert len(rows) == 3 and all(len(r.split("|")) == 13 for r in rows)  # 11 figures per model
    assert "LM weight" in report and "chosen on dev" in first
    assert "| model | test WER greedy |" in first and "2 updates" in report
    assert (tmp_path / "test_pretrained_lm.jsonl").read_text().count("\n") >= 1
    assert main(args) == 0
    assert "reused the cached corpus" in capsys.readouterr().out
