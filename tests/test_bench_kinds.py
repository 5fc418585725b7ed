"""``make bench`` on two CPU kinds: the AVX2 pass really runs the speed benchmarks with PyTorch's AVX2 kernels
(a child process reports its kernels), leaves the other benchmarks out, and is skipped where the machine's own
kind is AVX2 already."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import run_all

REPORT_KERNELS = "import torch\nprint('kernels:', torch.backends.cpu.get_cpu_capability())\n"


@pytest.fixture
def fake_benchmarks(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "kernels.py").write_text(REPORT_KERNELS, encoding="utf-8")
    (tmp_path / "benchmarks" / "other.py").write_text("print('other ran')\n", encoding="utf-8")
    monkeypatch.setattr(run_all, "ROOT", tmp_path)
    monkeypatch.setattr(run_all, "BENCHMARKS", [(["kernels.py"], False, False, True), (["other.py"], False, False, False)])
    return tmp_path


def test_the_avx2_pass_runs_the_speed_benchmarks_with_avx2_kernels(fake_benchmarks: Path, monkeypatch) -> None:
    monkeypatch.setattr(run_all, "own_kind", lambda: "AVX512")  # as on a machine with more than AVX2
    out = fake_benchmarks / "summary.md"
    assert run_all.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("other ran") == 1  # not a speed benchmark: once, on the machine's own kind
    avx2 = text.split("kernels.py (AVX2 kernels)", 1)[1]
    assert "kernels: AVX2" in avx2.split("##", 1)[0]  # the child ran with AVX2 kernels


def test_no_second_pass_where_the_machine_is_avx2_already(fake_benchmarks: Path, monkeypatch) -> None:
    monkeypatch.setattr(run_all, "own_kind", lambda: "AVX2")
    out = fake_benchmarks / "summary.md"
    assert run_all.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("kernels:") == 1 and "the AVX2 pass is the same and left out" in text
