"""Pretraining step time and model FLOPs utilisation (MFU) on one device.

    python benchmarks/gpu_pretrain.py                       # BASE, bf16, 8 x 15.6 s, on the GPU
    python benchmarks/gpu_pretrain.py --size tiny --device cpu --batch 2 --seconds 2 --steps 2

A full step (masks, distractors, forward, loss, backward, AdamW step) of our pretrainer
under bf16 autocast (``--precision fp32`` to turn it off), median of ``--steps`` after two
warm-up steps. The model FLOPs of one step are counted by ``torch.utils.flop_counter``
(matrix products and convolutions, forward and backward) on the same batch; MFU is
FLOPs / step time / the device's peak (``--peak-tflops``; by default the dense bf16 peak of
H100 and H200 SXM, 989 TFLOP/s, for those names, else required). Also prints audio seconds
per second and, for a data-parallel estimate, the gradient all-reduce volume per update
(fp32 gradients, ring all-reduce: 2 (N-1)/N of it through each device's link).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from cssl.model import build_pretrainer
from cssl.utils.config import load_config, preset
from pretrain.config import PretrainConfig

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}
"""Dense bf16 peak of the SXM parts (no sparsity)."""


def step_fn(cfg: PretrainConfig, device: torch.device, bf16: bool):
    torch.manual_seed(0)
    model = build_pretrainer(cfg.model, cfg.loss.num_distractors, 0, cfg.loss.logit_temperature).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(waves: torch.Tensor, lengths: torch.Tensor, seed: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(waves, lengths, [seed * 1000 + i for i in range(len(waves))], tau=2.0)
            loss = (out.contrastive + cfg.loss.diversity_weight * out.diversity
                    + cfg.loss.penalty_weight * out.penalty) / max(out.count, 1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "base", "large"), default="base")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.6, help="seconds of audio per utterance (BASE crops 250k samples)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by device name)")
    parser.add_argument("--world", type=int, default=8, help="data-parallel devices for the all-reduce figure")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = load_config(PretrainConfig, preset(f"pretrain/{args.size}.yaml"))
    bf16 = args.precision == "bf16"
    model, step = step_fn(cfg, device, bf16)
    samples = int(args.seconds * 16000)
    waves = (torch.randn(args.batch, samples, generator=torch.Generator().manual_seed(0)) * 0.1).to(device)
    lengths = torch.full((args.batch,), samples, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        step(waves, lengths, 0)
    flops = counter.get_total_flops()
    for seed in (1, 2):
        step(waves, lengths, seed)
    times = []
    for seed in range(3, 3 + args.steps):
        _sync(device)
        start = time.perf_counter()
        step(waves, lengths, seed)
        _sync(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    grad_bytes = params * 4
    print(f"{args.size}, {args.batch} x {args.seconds:g} s, {args.precision}, {name}")
    print(f"step {seconds * 1000:.1f} ms (median of {len(times)}), {args.batch * args.seconds / seconds:.0f} audio s/s")
    print(f"model FLOPs per step {flops / 1e12:.3f} T ({flops / 1e9 / (args.batch * args.seconds):.1f} GFLOP per audio s), "
          f"achieved {flops / seconds / 1e12:.3f} TFLOP/s"
          + (f", MFU {flops / seconds / (peak * 1e12):.1%} of {peak:g} TFLOP/s" if peak else ", MFU: give --peak-tflops"))
    print(f"{params / 1e6:.1f} M trained parameters: all-reduce of {grad_bytes / 2**20:.0f} MiB of fp32 gradients per "
          f"update, {2 * (args.world - 1) / args.world * grad_bytes / 2**20:.0f} MiB through each of {args.world} devices' links")
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(main())
