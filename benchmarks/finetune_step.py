"""Fine-tuning step: cssl against HF transformers' Wav2Vec2ForCTC, same weights, same batch.

    pip install -e '.[bench]'      # transformers, only for the benchmarks
    python benchmarks/finetune_step.py --size tiny --batch 8 --seconds 4 --steps 5 [--bf16] [--threads 2]
    python benchmarks/finetune_step.py --size base --batch 4 --seconds 4 --steps 3

A full fine-tuning step as each library's trainer runs it: the local tower frozen (and in eval mode),
SpecAugment time masks (5% of frames start a 10-frame span: cssl's fine-tuning default, set as HF's
``mask_time_prob`` and ``mask_time_length``), forward, CTC loss over a character vocabulary (blank 0),
backward, gradient clipping at 1 and a fused AdamW update over the trainable parameters (cssl's with
``optim.fused``; transformers' Trainer defaults to it with torch >= 2.8). Both start from the
same weights (HF's model converted by torchaudio and loaded by cssl) and see the same waveforms and
transcripts (random characters, 12 per second); steps alternate between the two in one process;
medians over ``--steps`` after a warm-up step. Peak memory: resident set above the level after building
each model, in a child process of its own. fp32 unless ``--bf16`` (autocast for both).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_info import cpu_line
from inference import MODELS, VOCAB, hf_ctc  # noqa: E402
from pretrain_step import RssSampler  # noqa: E402

from cssl.model import ModelConfig, build_model  # noqa: E402
from cssl.model.ctc import ctc_loss  # noqa: E402
from cssl.train.runtime import build_optimizer  # noqa: E402
from cssl.utils.config import load_config  # noqa: E402
from finetune.config import FinetuneConfig  # noqa: E402
from finetune.freezing import apply_freezing, set_frozen_eval  # noqa: E402
from finetune.train import _specaugment  # noqa: E402


class Inputs:
    """Waveforms (B, S), their lengths, and padded random transcripts (B, L) with lengths."""

    def __init__(self, batch: int, seconds: float) -> None:
        gen = torch.Generator().manual_seed(0)
        samples = int(seconds * 16000)
        self.waves = torch.randn(batch, samples, generator=gen) * 0.1
        self.lengths = torch.full((batch,), samples)
        chars = int(seconds * 12)
        self.targets = torch.randint(3, len(VOCAB), (batch, chars), generator=gen)  # no blank, unk, separator
        self.target_lengths = torch.full((batch,), chars)
        self.indices = list(range(batch))


class OurStep:
    def __init__(self, cfg: ModelConfig, state: dict) -> None:
        self.cfg = FinetuneConfig(model=cfg)
        self.model = build_model(cfg, vocab_size=len(VOCAB))
        self.model.load_state_dict(state, strict=False)
        self.frozen = apply_freezing(self.model, feature_encoder=True, context_layers=0, whole_encoder=False)
        o = self.cfg.optim
        self.opt = build_optimizer(self.model.parameters(), 1e-4, o.betas, o.eps, o.weight_decay, fused=True)

    def __call__(self, x: Inputs, step: int) -> float:
        self.model.train()
        set_frozen_eval(self.model, self.frozen)
        time_mask, channel_mask = _specaugment(self.cfg, self.model, x, step)
        logits, frames = self.model(x.waves, x.lengths, time_mask, channel_mask)
        loss = ctc_loss(logits, frames, x.targets, x.target_lengths).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss)


class HFStep:
    def __init__(self, cfg: ModelConfig, state: dict) -> None:
        self.model = hf_ctc(cfg, len(VOCAB))
        self.model.load_state_dict(state)
        self.model.config.mask_time_prob, self.model.config.mask_time_length = 0.05, 10
        self.model.config.ctc_loss_reduction, self.model.config.pad_token_id = "sum", 0
        self.model.freeze_feature_encoder()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-4, fused=True)  # transformers' Trainer default (torch >= 2.8)

    def __call__(self, x: Inputs, step: int) -> float:
        self.model.train()
        labels = x.targets.masked_fill(torch.arange(x.targets.shape[1])[None, :] >= x.target_lengths[:, None], -100)
        loss = self.model(x.waves, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss)


def weights(size: str) -> tuple[ModelConfig, dict, dict]:
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    torch.manual_seed(0)
    cfg = load_config(ModelConfig, MODELS[size])
    hf = hf_ctc(cfg, len(VOCAB))
    return cfg, hf.state_dict(), import_huggingface_model(hf).state_dict()


def peak(kind: str, size: str, batch: int, seconds: float, bf16: bool, threads: int, queue) -> None:
    """Child process: peak resident MiB above the level after building ``kind``'s step, over two steps
    (sampled every millisecond)."""
    torch.set_num_threads(threads)
    cfg, hf_state, ours_state = weights(size)
    step = HFStep(cfg, hf_state) if kind == "hf" else OurStep(cfg, ours_state)
    x = Inputs(batch, seconds)
    sampler = RssSampler()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(2):
            step(x, i)
    queue.put(sampler.stop())


def step_arguments(doc: str, argv: list[str] | None, steps: int) -> argparse.Namespace:
    """The options of the step benchmarks (size, batch, seconds, steps, threads, bf16); sets the threads."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def main(argv: list[str] | None = None) -> int:
    args = step_arguments(__doc__, argv, steps=5)
    cfg, hf_state, ours_state = weights(args.size)
    steps = {"HF transformers Wav2Vec2ForCTC": HFStep(cfg, hf_state), "cssl": OurStep(cfg, ours_state)}
    x = Inputs(args.batch, args.seconds)
    times: dict[str, list[float]] = {k: [] for k in steps}
    losses: dict[str, float] = {}
    for i in range(args.steps + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                losses[name] = step(x, i)
            if i > 0:  # the first step warms up allocators and kernels
                times[name].append(time.perf_counter() - start)
    memory = {}
    ctx = mp.get_context("spawn")
    for kind, name in (("hf", "HF transformers Wav2Vec2ForCTC"), ("cssl", "cssl")):
        queue = ctx.Queue()
        child = ctx.Process(target=peak, args=(kind, args.size, args.batch, args.seconds, args.bf16, args.threads, queue))
        child.start()
        memory[name] = queue.get()
        child.join()
    hf = statistics.median(times["HF transformers Wav2Vec2ForCTC"])
    print(f"# Fine-tuning step, {args.size.upper()} size, batch {args.batch} x {args.seconds:g} s, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}, {args.threads} threads")
    print(f"\n{cpu_line()}, "
          f"torch {torch.__version__}, medians of {args.steps} steps\n")
    print("| implementation | median s | audio s per s | vs HF | peak MB | last loss (sum over the batch) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, t in times.items():
        m = statistics.median(t)
        print(f"| {name} | {m:.3f} | {args.batch * args.seconds / m:.1f} | {hf / m:.2f}x | {memory[name]:.0f} "
              f"| {losses[name]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
