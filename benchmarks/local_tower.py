"""The local tower alone: cssl's CPU kernels (time-major block GEMMs) against stock ``conv1d`` and torchaudio.

    python benchmarks/local_tower.py [--sizes tiny,base] [--batch 4] [--seconds 4] [--repeats 5] [--threads 2]

Three implementations of the same convolution stack on the same weights and waveforms, each timed frozen
(forward without gradients, as in fine-tuning with the tower frozen, and in inference) and trained
(forward and backward to the weights, as in pretraining):

- ``cssl``: :class:`cssl.model.feature_encoder.FeatureEncoder` with its CPU kernels
  (:mod:`cssl.kernels.block_conv`);
- ``cssl stock``: the same module forced to ``F.conv1d`` (:func:`cssl.kernels.switch.use_kernels`), what it
  runs on CUDA;
- ``torchaudio``: torchaudio's ``FeatureExtractor`` loading the same state dict.

Interleaved in one process, medians over ``--repeats`` after a warm-up; the ratios are each peer's median
over cssl's. The outputs are checked equal (to float rounding) before anything is timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_info import cpu_line  # noqa: E402
from inference import MODELS  # noqa: E402

from cssl.kernels.switch import use_kernels  # noqa: E402
from cssl.model import ModelConfig  # noqa: E402
from cssl.model.feature_encoder import build_feature_encoder  # noqa: E402
from cssl.utils.config import load_config  # noqa: E402

IMPLEMENTATIONS = ("cssl", "cssl stock", "torchaudio")


def towers(size: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Each implementation as waveforms (B, S) -> frames (B, T, C), on one set of weights."""
    from torchaudio.models.wav2vec2.components import _get_feature_extractor

    cfg = load_config(ModelConfig, MODELS[size]).feature_encoder
    ours = build_feature_encoder(cfg)
    theirs = _get_feature_extractor(cfg.norm, [list(layer) for layer in cfg.conv_layers], cfg.bias)
    theirs.load_state_dict(ours.state_dict())

    def stock(waves: torch.Tensor) -> torch.Tensor:
        with use_kernels("stock"):
            return ours(waves)[0]

    return {"cssl": lambda waves: ours(waves)[0], "cssl stock": stock,
            "torchaudio": lambda waves: theirs(waves, None)[0]}


def timed(run: Callable[[torch.Tensor], torch.Tensor], waves: torch.Tensor, train: bool) -> float:
    """Seconds for one forward (frozen) or forward and backward to the weights (trained)."""
    start = time.perf_counter()
    with torch.set_grad_enabled(train):
        frames = run(waves)
        if train:
            frames.square().mean().backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="tiny,base")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    waves = torch.randn(args.batch, int(args.seconds * 16000)) * 0.1  # (B, S)
    print(f"# Local tower, batch {args.batch} x {args.seconds:g} s, fp32, {args.threads} threads; {cpu_line()}, "
          f"torch {torch.__version__}\n")
    print("| size | pass | " + " | ".join(IMPLEMENTATIONS) + " | stock / cssl | torchaudio / cssl |")
    print("|---|---|" + "---:|" * (len(IMPLEMENTATIONS) + 2))
    for size in args.sizes.split(","):
        runs = towers(size)
        with torch.no_grad():
            reference = runs["torchaudio"](waves)
            for name, run in runs.items():
                torch.testing.assert_close(run(waves), reference, rtol=1e-4, atol=1e-4, msg=f"{size} {name}")
        for train in (False, True):
            times: dict[str, list[float]] = {name: [] for name in runs}
            for repeat in range(args.repeats + 1):
                for name, run in runs.items():
                    seconds = timed(run, waves, train)
                    if repeat:  # the first round warms up
                        times[name].append(seconds)
            median = {name: statistics.median(t) for name, t in times.items()}
            cells = " | ".join(f"{median[name]:.3f} s" for name in IMPLEMENTATIONS)
            print(f"| {size} | {'forward and backward' if train else 'forward, frozen'} | {cells} | "
                  f"{median['cssl stock'] / median['cssl']:.2f}x | {median['torchaudio'] / median['cssl']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
