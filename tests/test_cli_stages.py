"""One command: ``cssl pretrain|finetune|calibrate|release|demo`` run the stages' own command lines,
and ``cssl --help`` lists every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cssl.cli import build_parser, main
from cssl.cli.stages import STAGES, stage_of

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_help_lists_every_command_in_one_screen() -> None:
    text = build_parser().format_help()
    commands = build_parser()._subparsers._group_actions[0].choices  # every registered command
    assert set(STAGES) <= set(commands)
    missing = [name for name in commands if f"cssl {name} " not in text]
    assert missing == []
    assert len(text.splitlines()) <= 40


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_a_stage_through_cssl_is_the_stage_module(stage: str) -> None:
    overrides = ["optim.lr=0.125", "--print-config"]
    direct, through = run("-m", stage, *overrides), run("-m", "cssl", stage, *overrides)
    assert direct.returncode == through.returncode == 0, through.stderr
    assert through.stdout == direct.stdout
    assert any(line.startswith("optim.lr = 0.125  #") for line in through.stdout.splitlines())
    usage = run("-m", "cssl", stage, "--help")
    assert usage.stdout.startswith(f"usage: cssl {stage} ")


def test_stage_errors_keep_the_stage_name_and_debug_passes_through(tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "ft.pt"
    torch.save({"kind": "finetune", "model": {}}, ckpt)
    assert main(["release", str(ckpt), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cssl release: error:") and "not a pretraining checkpoint" in err
    assert "Traceback" not in err
    proc = run("-m", "cssl", "--debug", "release", str(ckpt), str(tmp_path / "out.pt"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert not (tmp_path / "out.pt").exists()


def test_only_a_stage_name_in_command_position_is_handed_over() -> None:
    assert stage_of(["pretrain", "a.yaml", "x=1"]) == ("pretrain", ["a.yaml", "x=1"], False)
    assert stage_of(["--debug", "finetune", "--cv", "3"]) == ("finetune", ["--cv", "3"], True)
    assert stage_of(["evaluate", "pretrain"]) is None  # an argument of another command
    assert stage_of(["--help", "pretrain"]) is None
    assert stage_of([]) is None
