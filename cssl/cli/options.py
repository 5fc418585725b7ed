"""Options several commands share."""

from __future__ import annotations

import argparse


def threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads for the command."""
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def set_threads(args: argparse.Namespace) -> None:
    """Applies ``--threads``."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
