"""Options several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path


def threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads for the command."""
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def set_threads(args: argparse.Namespace) -> None:
    """Applies ``--threads``."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def floats(text: str) -> tuple[float, ...]:
    """Argument type: comma-separated numbers (``0.5,1,2``)."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def ensemble_arg(p: argparse.ArgumentParser) -> None:
    """``--ensemble CKPT`` (repeatable): more fine-tuned checkpoints averaged with the first."""
    p.add_argument("--ensemble", type=Path, action="append", default=[], metavar="CKPT",
                   help="another fine-tuning checkpoint of the same vocabulary, averaged with the first "
                        "(each frame's probabilities); repeat for more. Decode ensembles with --lexicon, --lm or "
                        "--grammar: greedy decoding drops letters where the models spike at different frames")


def seed_list(text: str) -> list[int]:
    """``--seeds``: ``N`` is seeds 1 to N; ``2,3`` is those seeds (two invocations can share an arm's seeds)."""
    seeds = [int(part) for part in text.split(",") if part.strip()]
    if not seeds or min(seeds) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a count N >= 1 or seeds >= 1 separated by commas")
    return seeds if "," in text else list(range(1, seeds[0] + 1))


def force_arg(p: argparse.ArgumentParser) -> None:
    """``--force``: replace an existing output (never one that is also an input)."""
    p.add_argument("--force", action="store_true", help="replace the output if it exists (an output that is also "
                   "an input is refused all the same)")


def decoder_inputs(args: argparse.Namespace) -> list:
    """The files a decoding command reads besides its audio: checkpoints, LM, lexicon, grammar."""
    return [args.checkpoint, *args.ensemble, args.lm, args.lexicon, args.grammar]
