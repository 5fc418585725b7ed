"""``make bench``: runs every benchmark and writes one markdown summary with the machine's details.

    python benchmarks/run_all.py [--out runs/bench/summary.md] [--quick]

Each benchmark prints its own markdown; this script collects the outputs in order, with
the command line and wall time of each, under a header naming the CPU, cores, GPU and
library versions. The fp32 speed benchmarks run twice where the machine has more than AVX2 (``--kinds
own,avx2``): with its own kernels, then with PyTorch, oneDNN and MKL held to AVX2 (an AVX2-only CPU's
code paths), so every ratio is known on both kinds. Benchmarks that need the ``bench`` extra (transformers) are reported
as skipped when it is missing. ``--quick`` leaves out the label-budget and real-speech benchmarks (about
an hour each on 2 CPU cores; their finished runs are reused, so a second ``make bench`` is quick;
real speech runs only where ../shared/data holds its recordings).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from cpu_info import cpu_kind as own_kind
from cpu_info import cpu_name

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS = [
    (["data_pipeline.py"], False, False, False),
    (["pretrain_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "8"], True, False, True),
    (["pretrain_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "8", "--bf16"], True, False, False),
    (["pretrain_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3"], True, False, True),
    (["pretrain_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3", "--bf16"], True, False, False),
    (["finetune_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "5"], True, False, True),
    (["finetune_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "5", "--bf16"], True, False, False),
    (["finetune_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3"], True, False, True),
    (["finetune_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3", "--bf16"], True, False, False),
    (["local_tower.py", "--sizes", "tiny,base", "--batch", "4", "--seconds", "4", "--repeats", "5"], False, False, True),
    (["inference.py", "--sizes", "tiny,base", "--seconds", "10", "--threads", "1,2", "--repeats", "3"], True, False, True),
    (["label_budget.py"], False, True, False),
    (["real_speech.py"], False, True, False),
]
"""Script and arguments, whether it needs transformers, whether ``--quick`` leaves it out, and whether it is
timed again on the AVX2 kind (the fp32 speed benchmarks; bf16 has no AVX2 kernels)."""

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
"""The environment that lowers PyTorch, oneDNN and MKL to their AVX2 kernels: an AVX2-only CPU's code paths
on this machine."""


def machine() -> list[str]:
    import torch

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"- CPU: {cpu}, {os.cpu_count()} logical cores", f"- GPU: {gpu}",
            f"- Python {platform.python_version()}, torch {torch.__version__}, {platform.platform()}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "summary.md")
    parser.add_argument("--quick", action="store_true", help="leave out the long label-budget benchmark")
    parser.add_argument("--kinds", default="own,avx2",
                        help="CPU kinds, comma separated: 'own' (the machine's kernels) and 'avx2' (the fp32 speed "
                             "benchmarks again with AVX2 kernels; left out where the machine's own kind is AVX2)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if not set(kinds) <= {"own", "avx2"}:
        parser.error(f"--kinds {args.kinds}: among own, avx2")
    has_hf = importlib.util.find_spec("transformers") is not None
    parts = ["# cssl benchmarks", "", *machine(), ""]
    failed = 0
    own = own_kind()
    if "avx2" in kinds and own.startswith("AVX2"):
        parts += [f"The machine's own kind is {own}: the AVX2 pass is the same and left out.", ""]
        kinds = [k for k in kinds if k != "avx2"] or ["own"]
    for kind in kinds:
        for cmd, needs_hf, long, per_kind in BENCHMARKS:
            if kind == "avx2" and not per_kind:
                continue
            title = " ".join(cmd) + (" (AVX2 kernels)" if kind == "avx2" else f" ({own} kernels)" if per_kind else "")
            parts += [f"## `benchmarks/{title}`", ""]
            if long and args.quick:
                parts += ["left out (--quick)", ""]
                continue
            if needs_hf and not has_hf:
                parts += ["skipped: needs the bench extra (`pip install -e '.[bench]'`)", ""]
                continue
            print(f"== {title}", flush=True)
            started = time.monotonic()
            env = {**os.environ, **(AVX2 if kind == "avx2" else {})}
            proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / cmd[0]), *cmd[1:]],
                                  capture_output=True, text=True, env=env)
            print(proc.stdout, flush=True)
            if proc.returncode:
                failed += 1
                print(proc.stderr, file=sys.stderr)
                parts += [f"FAILED (exit {proc.returncode}):", "", "```", proc.stderr[-3000:], "```", ""]
                continue
            parts += [proc.stdout.strip(), "", f"({time.monotonic() - started:.0f} s)", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(parts) + "\n", encoding="utf-8")
    print(f"summary: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
