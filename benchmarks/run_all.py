"""``make bench``: runs every benchmark and writes one markdown summary with the machine's details.

    python benchmarks/run_all.py [--out runs/bench/summary.md] [--quick]

Each benchmark prints its own markdown; this script collects the outputs in order, with
the command line and wall time of each, under a header naming the CPU, cores, GPU and
library versions. Benchmarks that need the ``bench`` extra (transformers) are reported
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

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS = [
    (["data_pipeline.py"], False, False),
    (["pretrain_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "8"], True, False),
    (["pretrain_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "8", "--bf16"], True, False),
    (["pretrain_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3"], True, False),
    (["pretrain_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3", "--bf16"], True, False),
    (["finetune_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "5"], True, False),
    (["finetune_step.py", "--size", "tiny", "--batch", "8", "--seconds", "4", "--steps", "5", "--bf16"], True, False),
    (["finetune_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3"], True, False),
    (["finetune_step.py", "--size", "base", "--batch", "4", "--seconds", "4", "--steps", "3", "--bf16"], True, False),
    (["inference.py", "--sizes", "tiny,base", "--seconds", "10", "--threads", "1,2", "--repeats", "3"], True, False),
    (["label_budget.py"], False, True),
    (["real_speech.py"], False, True),
]
"""Script and arguments, whether it needs transformers, and whether ``--quick`` leaves it out."""


def machine() -> list[str]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo", encoding="ascii", errors="ignore"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"- CPU: {cpu}, {os.cpu_count()} logical cores", f"- GPU: {gpu}",
            f"- Python {platform.python_version()}, torch {torch.__version__}, {platform.platform()}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "summary.md")
    parser.add_argument("--quick", action="store_true", help="leave out the long label-budget benchmark")
    args = parser.parse_args(argv)
    has_hf = importlib.util.find_spec("transformers") is not None
    parts = ["# cssl benchmarks", "", *machine(), ""]
    failed = 0
    for cmd, needs_hf, long in BENCHMARKS:
        title = " ".join(cmd)
        parts += [f"## `benchmarks/{title}`", ""]
        if long and args.quick:
            parts += ["left out (--quick)", ""]
            continue
        if needs_hf and not has_hf:
            parts += ["skipped: needs the bench extra (`pip install -e '.[bench]'`)", ""]
            continue
        print(f"== {title}", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / cmd[0]), *cmd[1:]],
                              capture_output=True, text=True)
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
