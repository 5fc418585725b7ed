"""``cssl export CKPT OUT.onnx [--int8]`` and ``cssl serve MODEL``: a fine-tuned model for other runtimes and
behind a local HTTP/WebSocket service."""

from __future__ import annotations

import argparse
from pathlib import Path

from cssl.cli.options import force_arg, set_threads, threads_arg
from cssl.utils.io import check_outputs


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``export`` command."""
    p = groups.add_parser("export", help="a fine-tuned checkpoint as an ONNX file (ONNX Runtime), fp32 or int8",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="fine-tuning checkpoint (best.pt)")
    p.add_argument("out", type=Path, help="the ONNX file written (vocabulary, temperature and normalisation inside)")
    p.add_argument("--int8", action="store_true", help="int8 weights for the matrix products (dynamic quantisation)")
    threads_arg(p)
    force_arg(p)
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from cssl.deploy.export import export_onnx

    set_threads(args)
    check_outputs([args.out], [args.checkpoint], force=args.force)
    report = export_onnx(args.checkpoint, args.out, int8=args.int8)
    meta = report.metadata
    print(f"wrote {report.path} ({report.megabytes:.1f} MB, {meta.quantization} weights, {len(meta.symbols)} symbols, "
          f"temperature {meta.temperature:.3f}, normalize {str(meta.normalize).lower()})")
    print(f"check against the checkpoint (two noise clips): largest logit difference {report.max_logit_error:.2e}, "
          f"most likely symbol agrees on {report.greedy_agreement:.1%} of frames")
    print(f"use it: cssl transcribe {report.path} FILES (or Recognizer.from_checkpoint({str(report.path)!r}))")
    return 0
