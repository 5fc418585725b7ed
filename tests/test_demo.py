"""The demo's phases end to end at a toy size: corpus, pretraining, fine-tuning, evaluation, report and plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from cssl.experiments.demo import main


def test_demo_runs_end_to_end_and_reuses_the_corpus(tmp_path: Path, capsys) -> None:
    args = ["--out", str(tmp_path), "--hours", "0.02", "--pretrain-minutes", "5", "--pretrain-steps", "3",
            "--finetune-steps", "2"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "synthesized" in first
    report = (tmp_path / "report.md").read_text()
    assert "| unlabeled |" in report and "Updates: 3" in report
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[0] == "## What pretraining buys"  # the report leads with it
    lead = {row.split("|")[1].strip(): row.split("|")[2:5] for row in report.splitlines()
            if row.startswith(("| WER greedy", "| CER greedy", "| WER + LM", "| CER + LM"))}
    assert len(lead) == 4
    for pre, scratch, gain in lead.values():
        if float(scratch) > 0:
            assert float(gain.strip().rstrip("%")) == pytest.approx(100 * (1 - float(pre) / float(scratch)), abs=0.06)
    assert "Label efficiency: not measured for" in report or "Label efficiency: pretrained with" in report
    for name in ("pretrain_curves", "finetune_curves", "reliability_pretrained", "reliability_scratch"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    rows = [line for line in report.splitlines() if line.startswith("| pretrained |") or line.startswith("| scratch")]
    assert len(rows) == 2 and all(len(r.split("|")) == 13 for r in rows)  # the default models, 11 figures each
    assert "LM weight" in report and "chosen on dev" in first
    assert "| model | test WER greedy |" in first and "2 updates" in report
    assert (tmp_path / "test_pretrained_lm.jsonl").read_text().count("\n") >= 1
    assert main(args) == 0
    assert "reused the cached corpus" in capsys.readouterr().out


def test_label_efficiency_line_and_the_shipped_figures(tmp_path: Path) -> None:
    from cssl.experiments.label_budget import checkpoint_tag, efficiency_line, shipped_line

    def row(minutes, model, seed, wer):
        return {"minutes": minutes, "model": model, "seed": seed, "greedy": {"wer": wer, "cer": wer / 2},
                "lm": {"wer": wer - 0.1, "cer": wer / 4}}

    rows = [row(1, "pretrained", 1, 0.5), row(1, "pretrained", 2, 0.7), row(10, "scratch", 1, 0.8),
            row(10, "scratch", 2, 0.6), row(1, "scratch", 1, 1.0), row(10, "pretrained", 1, 0.3)]
    line = efficiency_line(rows)
    assert line.startswith("Label efficiency: pretrained with 1 min of labels against scratch with 10 min (means of 2 and 2 seeds)")
    assert "greedy WER 0.600 vs 0.700" in line and "lm CER 0.150 vs 0.175" in line
    assert efficiency_line(rows, "self-trained") is None  # no self-trained rows
    second = {**row(1, "self-trained", 1, 0.2), "round": 2}
    taught = [*rows, row(1, "self-trained", 1, 0.4), second]
    first = efficiency_line(taught, "self-trained")
    assert first.startswith("Label efficiency: self-trained with 1 min") and "greedy WER 0.400 vs 0.700" in first
    assert "greedy WER 0.200 vs 0.700" in efficiency_line(taught, "self-trained x2")  # rounds are arms of their own
    from cssl.experiments.label_budget import group

    assert list(group(taught))[:3] == [(1, "pretrained"), (1, "self-trained"), (1, "self-trained x2")]
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x" * 10)
    shipped = tmp_path / "label_budget.json"
    assert "not measured for model.pt" in shipped_line(ckpt, shipped)
    import json

    shipped.write_text(json.dumps({"checkpoint": "other-10", "rows": rows}))
    assert "not measured" in shipped_line(ckpt, shipped)  # figures of another checkpoint are not quoted
    shipped.write_text(json.dumps({"checkpoint": checkpoint_tag(ckpt), "rows": rows}))
    quoted = shipped_line(ckpt, shipped)
    # 10 min: pretrained 0.3 vs scratch mean 0.7 greedy WER -> 57.1%; CER halves both -> the same 57.1%;
    # WER + LM 0.2 vs 0.6 -> 66.7%
    assert quoted.startswith("With 10 min of labels") and "greedy WER by 57.1%" in quoted, quoted
    assert "lm WER by 66.7%" in quoted and "(1 seed)" in quoted and line in quoted


def test_run_names_share_scratch_runs_and_separate_checkpoints() -> None:
    from cssl.experiments.label_budget import run_name

    names = [run_name(m, model, seed, tag) for tag in ("a-1", "b-2") for m in (1, 10)
             for model in ("pretrained", "scratch") for seed in (1, 2, 3)]
    # Every (budget, model, seed) of one checkpoint has its own folder, scratch folders are the same
    # for both checkpoints, pretrained folders differ, and the tag never repeats within a name.
    assert len(set(names[:12])) == 12
    assert {n for n in names if "scratch" in n} == {f"{m}min-scratch-seed{s}" for m in (1, 10) for s in (1, 2, 3)}
    assert "1min-pretrained-a-1-seed2" in names and "1min-pretrained-b-2-seed2" in names
    assert all(n.count("a-1") + n.count("b-2") <= 1 for n in names)
    assert run_name(0.5, "scratch", 1, "a-1") == "0.5min-scratch-seed1"
    assert run_name(1, "pretrained", 2, "a-1", "full") == "1min-pretrained-a-1-full-seed2"
    assert run_name(1, "scratch", 2, "a-1", "full") == "1min-scratch-full-seed2"
    assert run_name(1, "self-trained", 2, "a-1", "keep0.5") == "1min-self-trained-a-1-keep0.5-seed2"
    with pytest.raises(ValueError, match="model 'frozen'"):
        run_name(1, "frozen", 1, "a-1")


def test_self_trained_student_is_kept_only_when_dev_says_it_is_better(tmp_path: Path) -> None:
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from label_budget import dev_gate

    def run(name: str, cers: list[float]) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        lines = [json.dumps({"split": "valid", "step": 50 * (i + 1), "wer": 0.9, "cer": c}) for i, c in enumerate(cers)]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        return folder

    teacher_row = {"greedy": {"wer": 0.9, "cer": 0.5}, "lm": {"wer": 0.7, "cer": 0.45}, "lm_weight": 3, "word_score": 4}
    student_row = {"greedy": {"wer": 0.8, "cer": 0.4}, "lm": {"wer": 0.68, "cer": 0.5}, "lm_weight": 1, "word_score": -2,
                   "model": "self-trained"}
    teacher = run("teacher", [0.8, 0.5, 0.6])
    better, worse = run("better", [0.7, 0.45, 0.4]), run("worse", [0.76, 0.9, 0.85])
    kept = dev_gate(student_row, teacher_row, better, teacher, "cer")
    assert kept["chosen"] == "student" and kept["lm"] == student_row["lm"]
    set_aside = dev_gate(student_row, teacher_row, worse, teacher, "cer")
    assert set_aside["chosen"] == "teacher" and set_aside["lm"] == teacher_row["lm"] and set_aside["lm_weight"] == 3
    assert set_aside["student"]["lm"] == student_row["lm"]
