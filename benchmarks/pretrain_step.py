"""Pretraining step: cssl vs HF transformers' Wav2Vec2ForPreTraining (and fairseq2), same config, same batch.

    pip install -e '.[bench]'      # transformers, only for this benchmark
    python benchmarks/pretrain_step.py --size tiny --batch 8 --seconds 4 --steps 5
    python benchmarks/pretrain_step.py --size base --batch 4 --seconds 4

A full step is timed for both (masking and distractor sampling, forward, loss,
backward, fused AdamW step for every library), interleaved in one process on the same waveforms; medians over
``--steps`` after one warm-up step. Peak memory is measured per model in a child
process: on CPU the peak resident set above the level after building the model
(sampled every millisecond), on CUDA ``max_memory_allocated``. Both run in fp32
unless ``--bf16`` is given (autocast for both).

fairseq2 0.8.1 runs in its own environment (``make test-interop`` makes ``.venv-fairseq2``;
``--fairseq2 PYTHON`` names another, ``--fairseq2 none`` leaves it out): the cssl model is
written with ``cssl convert``'s fairseq2 writer (same weights and configuration) and
benchmarks/fairseq2_step_peer.py times fairseq2's full step there on the same waveforms,
after the other two (a separate process, so not interleaved with them; no memory figure).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from cpu_info import cpu_line

from cssl.model import ModelConfig, build_pretrainer
from cssl.utils.config import load_config, preset
from pretrain.config import PretrainConfig

PRESETS = {"tiny": preset("pretrain/tiny.yaml"), "base": preset("pretrain/base.yaml")}
ROOT = Path(__file__).resolve().parents[1]
FAIRSEQ2_PYTHON = ROOT / ".venv-fairseq2" / "bin" / "python"


def hf_model(cfg: ModelConfig, num_negatives: int, temperature: float, diversity: float):
    from transformers import Wav2Vec2ForPreTraining

    from cssl.convert.hf import transformers_config

    config = transformers_config(cfg, loss={"num_distractors": num_negatives, "logit_temperature": temperature,
                                            "diversity_weight": diversity})
    model = Wav2Vec2ForPreTraining(config)
    model.config._attn_implementation = "sdpa"
    return model


class HFStep:
    def __init__(self, cfg: PretrainConfig) -> None:
        from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

        self.mask_fn, self.neg_fn = _compute_mask_indices, _sample_negative_indices
        self.model = hf_model(cfg.model, cfg.loss.num_distractors, cfg.loss.logit_temperature,
                              cfg.loss.diversity_weight).train()
        self.cfg = cfg

    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor, step: int) -> float:
        m = self.cfg.model.mask
        frames = int(self.model._get_feat_extract_output_lengths(torch.tensor(waves.shape[1])))
        mask = self.mask_fn((waves.shape[0], frames), m.prob, m.span, min_masks=m.min_spans)
        neg = self.neg_fn((waves.shape[0], frames), self.cfg.loss.num_distractors, mask)
        out = self.model(waves, mask_time_indices=torch.from_numpy(mask).to(waves.device),
                         sampled_negative_indices=torch.from_numpy(neg).to(waves.device))
        out.loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(out.loss)


class OurStep:
    def __init__(self, cfg: PretrainConfig) -> None:
        self.model = build_pretrainer(cfg.model, cfg.loss.num_distractors, 0, cfg.loss.logit_temperature).train()
        self.cfg = cfg

    def __call__(self, waves: torch.Tensor, lengths: torch.Tensor, step: int) -> float:
        out = self.model(waves, lengths, [step * 1000 + i for i in range(len(waves))], tau=2.0)
        loss = (out.contrastive + self.cfg.loss.diversity_weight * out.diversity
                + self.cfg.loss.penalty_weight * out.penalty) / max(out.count, 1)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss)


def batch(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    samples = int(args.seconds * 16000)
    waves = torch.randn(args.batch, samples, generator=gen) * 0.1
    return waves.to(device), torch.full((args.batch,), samples, device=device)


def build(kind: str, cfg: PretrainConfig, device: torch.device):
    torch.manual_seed(0)
    step = (HFStep if kind == "hf" else OurStep)(cfg)
    step.model.to(device)
    # after the move: states live on the device; fused (cssl: optim.fused; transformers' Trainer default, torch >= 2.8)
    step.opt = torch.optim.AdamW(step.model.parameters(), lr=1e-4, fused=True)
    return step


def autocast(args: argparse.Namespace, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)


def time_both(args: argparse.Namespace, cfg: PretrainConfig, device: torch.device) -> dict[str, list[float]]:
    steps = {"hf": build("hf", cfg, device), "cssl": build("cssl", cfg, device)}
    waves, lengths = batch(args, device)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(args.steps + 1):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            with autocast(args, device):
                step(waves, lengths, i)
            _sync(device)
            if i > 0:  # the first step warms up allocators and kernels
                times[name].append(time.perf_counter() - start)
    return times


PEER_TRIES = 3
"""fairseq2 0.8.1's step process (torch 2.9.1, its quantizer compiled) is killed by a signal now and then on CPU
(``free(): invalid pointer`` at small batches): such a run is tried again. On an AVX-512 machine held to AVX2
kernels (``benchmarks/run_all.py --kinds avx2``) it died by SIGSEGV at every try: the table then says so."""


class PeerFailed(RuntimeError):
    """fairseq2's step process failed; the message says how (the other figures still stand)."""


def time_fairseq2(python: str, args: argparse.Namespace, cfg: PretrainConfig, device: torch.device) -> list[float]:
    """fairseq2's step times, in its environment, on the cssl model's weights and the same waveforms
    (:class:`PeerFailed` where its process fails)."""
    from cssl.convert import write_checkpoint
    from cssl.convert.payload import pretrain_payload

    model = build("cssl", cfg, torch.device("cpu")).model
    loss = {"num_distractors": cfg.loss.num_distractors, "logit_temperature": cfg.loss.logit_temperature}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_checkpoint(pretrain_payload(cfg.model, model.state_dict(), False, "benchmark", loss), folder / "bench.pt",
                         "fairseq2")
        torch.save(batch(args, torch.device("cpu"))[0], folder / "waves.pt")
        command = [python, str(ROOT / "benchmarks" / "fairseq2_step_peer.py"), str(folder), "bench",
                   "--steps", str(args.steps), "--threads", str(args.threads), "--device", args.device,
                   "--diversity", str(cfg.loss.diversity_weight), "--penalty", str(cfg.loss.penalty_weight)]
        for _ in range(PEER_TRIES):  # see PEER_TRIES
            done = subprocess.run(command + (["--bf16"] if args.bf16 else []), capture_output=True, text=True)
            if done.returncode >= 0:
                break
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise PeerFailed(f"exit status {done.returncode}" + (f": {lines[-1][-300:]}" if lines else ""))
    return json.loads(done.stdout.strip().splitlines()[-1])["fairseq2"]


def peak_memory(kind: str, args: argparse.Namespace, cfg_dict: dict, queue) -> None:
    from cssl.utils.config import from_dict

    cfg = from_dict(PretrainConfig, cfg_dict)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    step = build(kind, cfg, device)
    waves, lengths = batch(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sampler = RssSampler()
    for i in range(2):
        with autocast(args, device):
            step(waves, lengths, i)
    peak = sampler.stop()
    queue.put(torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak)


class RssSampler:
    """Peak resident memory above the level at creation, sampled every millisecond (MiB)."""

    def __init__(self) -> None:
        import threading

        self.base = self.peak = _rss_mib()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.001)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return max(self.peak, _rss_mib()) - self.base


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="autocast both models to bf16")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--fairseq2", default=str(FAIRSEQ2_PYTHON) if FAIRSEQ2_PYTHON.exists() else "none",
                        help="python of the fairseq2 environment, or none")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(PretrainConfig, PRESETS[args.size])
    times = time_both(args, cfg, device)
    peer_failed = None
    if args.fairseq2 != "none":
        try:
            times["fairseq2"] = time_fairseq2(args.fairseq2, args, cfg, device)
        except PeerFailed as failure:
            peer_failed = str(failure)
            print(f"fairseq2 step failed ({failure}); the table goes on without it", file=sys.stderr)
    memory = {}
    if not args.no_memory:
        ctx = mp.get_context("spawn")
        from cssl.utils.config import to_dict

        for kind in ("hf", "cssl"):
            queue = ctx.Queue()
            proc = ctx.Process(target=peak_memory, args=(kind, args, to_dict(cfg), queue))
            proc.start()
            memory[kind] = queue.get()
            proc.join()
    audio = args.batch * args.seconds
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"# Pretraining step, {args.size}: {args.batch} x {args.seconds:g} s, {device}, "
          f"{args.threads} threads, {'bf16' if args.bf16 else 'fp32'}; {cpu_line()}, "
          f"torch {torch.__version__}\n")
    print("| implementation | step (s, median) | audio s / s | peak memory (MiB) |")
    print("|---|---:|---:|---:|")
    labels = {"hf": "HF Wav2Vec2ForPreTraining", "fairseq2": "fairseq2 0.8.1 Wav2Vec2Model", "cssl": "cssl"}
    for name, label in labels.items():
        if name in med:
            mem = f"{memory[name]:,.0f}" if name in memory else "-"
            print(f"| {label} | {med[name]:.3f} | {audio / med[name]:.1f} | {mem} |")
    if peer_failed:
        print(f"| fairseq2 0.8.1 Wav2Vec2Model | failed ({peer_failed}) | - | - |")
    print(f"\nspeed-up (HF step / cssl step): {med['hf'] / med['cssl']:.2f}x")
    if "fairseq2" in med:
        print(f"speed-up (fairseq2 step / cssl step): {med['fairseq2'] / med['cssl']:.2f}x")
    if memory and memory["hf"] > 0:
        print(f"memory ratio (cssl / HF): {memory['cssl'] / memory['hf']:.2f}")
    print(json.dumps({"size": args.size, "step_s": med, "memory_mib": memory}))
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
