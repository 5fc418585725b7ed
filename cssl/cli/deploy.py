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

    p = groups.add_parser("serve", help="a local HTTP/WebSocket transcription service with a page to try it",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", type=Path, help="fine-tuning checkpoint (best.pt) or exported ONNX file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload")
    p.add_argument("--max-seconds", type=float, default=300.0, help="longest uploaded audio")
    p.add_argument("--max-stream-seconds", type=float, default=3600.0, help="longest WebSocket stream")
    p.add_argument("--lm", default=None, help="ARPA language model for beam search (cssl lm build)")
    p.add_argument("--lexicon", default=None, metavar="WORDS.txt", help="restrict beam search to these words")
    p.add_argument("--lm-weight", type=float, default=2.0, help="LM weight (choose it with cssl lm tune)")
    p.add_argument("--word-score", type=float, default=0.0, help="score added per word (cssl lm tune)")
    threads_arg(p)
    p.set_defaults(func=run_serve)


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


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cssl.decode.recognizer import Recognizer
    from cssl.serve.app import Limits, build_app

    set_threads(args)
    rec = Recognizer.from_checkpoint(args.model, lm=args.lm, lexicon=args.lexicon, lm_weight=args.lm_weight,
                                     word_score=args.word_score)
    limits = Limits(args.max_upload_mb, args.max_seconds, args.max_stream_seconds)
    app = build_app(rec, args.model.name, limits)
    print(f"serving {args.model} on http://{args.host}:{args.port}/ (POST /transcribe, WS /stream, GET /health)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
