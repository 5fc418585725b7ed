"""Where a training step's time goes: cssl's pretraining and fine-tuning steps under torch.profiler, by kernel group,
against the machine's matrix-product roofline measured in the same run.

    python benchmarks/profile_step.py [--size tiny] [--batch 8] [--seconds 4] [--steps 3] [--threads 2] [--bf16]

Each step is the one the benchmarks ``pretrain_step.py`` and ``finetune_step.py`` time (the trainers'
own forward, loss, backward and AdamW update), timed first without the profiler (the median of ``--steps``
after a warm-up step), then profiled for as many steps. Operators are grouped by what they compute (their self
CPU time, forward and backward together): the local tower's convolutions, matrix products (attention
projections, feed-forward, CTC head, quantizer), attention's score and softmax kernels, normalisation,
activations, the losses, the optimizer, and data movement (copies, concatenation, padding, indexing).
The matrix-product group also gets its achieved GFLOP/s (from the profiler's FLOP counts) against the
peak of a large square fp32 (or bf16) matrix product timed first: the roofline share of that group.
transformers' fine-tuning step (``finetune_step.py``'s peer) is profiled the same way, and the last line bounds
the speed-up any change outside the matrix products could bring: HF's step (unprofiled median) over our products
and attention alone.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_info import cpu_line  # noqa: E402

GROUPS = [  # (group, substrings of operator names), first match wins
    ("convolution (local tower, positional conv)", ("conv", "block_conv", "unfold", "im2col")),
    ("matrix products", ("addmm", "::mm", "bmm", "matmul", "linear", "baddbmm")),
    ("attention kernels", ("scaled_dot_product", "_flash_attention", "softmax", "_efficient_attention")),
    ("normalisation", ("layer_norm", "group_norm", "native_layer_norm", "batch_norm", "var", "rsqrt")),
    ("activations and dropout", ("gelu", "relu", "dropout", "bernoulli", "native_dropout")),
    ("losses (contrastive, CTC, diversity)", ("ctc", "cross_entropy", "nll", "log_softmax", "cosine", "logsumexp",
                                              "gumbel")),
    ("optimizer (AdamW)", ("_foreach", "adam", "lerp", "addcdiv", "addcmul", "sqrt_")),
    ("data movement", ("copy", "cat", "pad", "index", "gather", "scatter", "stack", "clone", "contiguous",
                       "transpose", "permute", "view", "reshape", "expand", "slice", "select", "masked", "where",
                       "fill", "zero", "empty", "to", "repeat", "narrow", "split", "chunk")),
]


def group_of(name: str) -> str:
    low = name.lower()
    for group, keys in GROUPS:
        if any(k in low for k in keys):
            return group
    return "other (elementwise arithmetic, reductions)"


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a large square matrix product: the machine's roofline for the matrix-product group."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def profile_step(name: str, step, inputs, steps: int, bf16: bool, peak: float) -> tuple[list[str], float, float]:
    """The kernel-group table of ``step`` (lines), its median wall seconds per step without the profiler and the
    seconds per step of its matrix products and attention kernels (the work a peer computing the same products
    cannot skip)."""
    plain = []
    for i in range(1 + steps):  # a warm-up step, then ``steps`` timed without the profiler
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            step(*inputs(i))
        plain.append(time.perf_counter() - start)
    median = statistics.median(plain[1:])
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        start = time.perf_counter()
        for i in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                step(*inputs(1 + steps + i))
        wall = (time.perf_counter() - start) / steps
    totals: dict[str, float] = defaultdict(float)
    flops: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        group = group_of(event.key)
        totals[group] += event.self_cpu_time_total / 1e6 / steps  # seconds per step
        flops[group] += (event.flops or 0) / steps
    covered = sum(totals.values())
    lines = [f"\n## {name}: {median:.3f} s per step (median of {steps}; {wall:.3f} s under the profiler)\n",
             "| kernel group | s per step | share | GFLOP/s |", "|---|---:|---:|---:|"]
    for group, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        rate = f"{flops[group] / seconds / 1e9:.0f}" if flops[group] and seconds else ""
        lines.append(f"| {group} | {seconds:.3f} | {seconds / covered:.1%} | {rate} |")
    lines.append(f"\nOperators' self time adds to {covered:.3f} s of {wall:.3f} s per step (the rest: Python, the "
                 "profiler, threads waiting).")
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    lines.append("\nTop operators: " + ", ".join(f"`{e.key}` {e.self_cpu_time_total / 1e6 / steps:.3f} s" for e in top))
    achieved = flops["matrix products"] / max(totals["matrix products"], 1e-9) / 1e9
    lines.append(f"\nMatrix products achieve {achieved:.0f} GFLOP/s, {achieved / peak:.0%} of the roofline ({peak:.0f}).")
    return lines, median, totals["matrix products"] + totals["attention kernels"]


def main(argv: list[str] | None = None) -> int:
    import finetune_step
    import pretrain_step

    args = finetune_step.step_arguments(__doc__, argv, steps=3)

    from cssl.utils.config import load_config
    from pretrain.config import PretrainConfig

    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_peak(dtype)
    lines = [f"# Training step profile, {args.size.upper()}, batch {args.batch} x {args.seconds:g} s, "
             f"{'bf16 autocast' if args.bf16 else 'fp32'}, {args.threads} threads",
             f"\n{cpu_line()}, torch {torch.__version__}; roofline: a 2048^3 "
             f"{'bf16' if args.bf16 else 'fp32'} matrix product runs at {peak:.0f} GFLOP/s"]
    torch.manual_seed(0)
    cfg = load_config(PretrainConfig, pretrain_step.PRESETS[args.size])
    ours = pretrain_step.build("cssl", cfg, torch.device("cpu"))
    waves = torch.randn(args.batch, int(args.seconds * 16000)) * 0.1
    lengths = torch.full((args.batch,), waves.shape[1])
    lines += profile_step("pretraining step", ours, lambda i: (waves, lengths, i), args.steps, args.bf16, peak)[0]
    cfg_m, hf_state, state = finetune_step.weights(args.size)
    tuning = finetune_step.OurStep(cfg_m, state)
    x = finetune_step.Inputs(args.batch, args.seconds)
    table, wall, products = profile_step("fine-tuning step", tuning, lambda i: (x, i), args.steps, args.bf16, peak)
    lines += table
    hf = finetune_step.HFStep(cfg_m, hf_state)
    table, hf_wall, hf_products = profile_step("transformers' fine-tuning step (Wav2Vec2ForCTC)", hf, lambda i: (x, i),
                                               args.steps, args.bf16, peak)
    lines += table
    lines.append(f"\nBound: cssl's matrix products and attention take {products:.3f} s per step (HF's: "
                 f"{hf_products:.3f} s); were all else free, its fine-tuning step would run {hf_wall / products:.2f}x "
                 f"HF's (measured here: {hf_wall / wall:.2f}x; medians without the profiler).")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
