"""Turns a pretraining checkpoint into a compact release: weights only, in half precision.

    cssl release runs/pretrain-10h/last.pt cssl/assets/tiny-pretrained.pt

The release keeps the kind, config and step (so ``finetune init=`` reads it like any
pretraining checkpoint) and drops the optimizer, sampler and RNG state. When the run's training
manifest is still where the config says and names speakers, their sorted list goes in as
``speakers``: what the model heard, so that a benchmark can refuse a model that heard its test speakers. Floating-point
tensors are stored as float16 (half the size; loading casts them back to float32).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from cssl.data.manifest import read_manifest
from cssl.train.checkpoint import load_checkpoint, save_checkpoint
from cssl.utils.errors import UserError, run_reporting


def release(checkpoint: str | Path, out: str | Path, dtype: torch.dtype = torch.float16) -> dict:
    """Writes the release of ``checkpoint`` to ``out`` atomically; returns it."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("kind") != "pretrain":
        raise UserError(f"{checkpoint}: not a pretraining checkpoint (kind {ckpt.get('kind')!r}); "
                        "a release is made from a pretraining run's checkpoint (its last.pt)")
    model = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    slim = {"kind": "pretrain", "config": ckpt["config"], "step": ckpt["step"], "model": model,
            "release_of": Path(checkpoint).name}
    speakers = training_speakers(ckpt["config"])
    if speakers:
        slim["speakers"] = speakers
    save_checkpoint(out, slim)
    return slim


def training_speakers(config: dict) -> list[str]:
    """Sorted speakers of the run's training manifest (a file manifest still on disk), else []."""
    manifest = Path(((config or {}).get("data") or {}).get("manifest") or "")
    if manifest.suffix not in (".jsonl", ".tsv") or not manifest.is_file():
        return []
    return sorted({e.speaker for e in read_manifest(manifest) if e.speaker is not None})


def main(argv: list[str] | None = None, prog: str = "python -m pretrain.release") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors")
    args = parser.parse_args(argv)
    return run_reporting(prog, lambda: _run(args), args.debug)


def _run(args: argparse.Namespace) -> int:
    slim = release(args.checkpoint, args.out)
    params = sum(v.numel() for v in slim["model"].values())
    heard = f"; {len(slim['speakers'])} speakers recorded" if "speakers" in slim else ""
    print(f"{args.out}: step {slim['step']}, {params / 1e6:.2f} M values, {args.out.stat().st_size / 2**20:.1f} MiB{heard}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
