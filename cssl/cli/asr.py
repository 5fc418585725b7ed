"""``cssl evaluate CKPT MANIFEST`` and ``cssl transcribe CKPT FILES_OR_DIR``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cssl.data.scan import AUDIO_EXTENSIONS


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``evaluate`` and ``transcribe`` commands."""
    p = groups.add_parser("evaluate", help="WER, CER and real-time factor of a checkpoint on a labeled manifest")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("manifest", type=Path)
    p.add_argument("--out", type=Path, default=None, help="per-utterance JSONL (default: beside the checkpoint)")
    _decoding_args(p)
    p.set_defaults(func=run_evaluate)

    p = groups.add_parser("transcribe", help="transcribe audio files or folders (text, or JSONL with word times)")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("inputs", type=Path, nargs="+", help="audio files or folders")
    p.add_argument("--jsonl", type=Path, default=None, help="write one JSON object per file here")
    _decoding_args(p)
    p.set_defaults(func=run_transcribe)


def _decoding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lm", default=None, help="ARPA language model for beam search (cssl lm build)")
    p.add_argument("--beam-size", type=int, default=50)
    p.add_argument("--lm-weight", type=float, default=2.0)
    p.add_argument("--word-score", type=float, default=0.0)
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="longer audio is decoded in overlapping chunks")
    p.add_argument("--precision", default="no", choices=("no", "bf16", "fp16", "auto"),
                   help="autocast for the model (auto: bf16 where the hardware has it natively)")


def _recognizer(args: argparse.Namespace):
    from cssl.recognizer import Recognizer

    return Recognizer.from_checkpoint(args.checkpoint, lm=args.lm, beam_size=args.beam_size,
                                      lm_weight=args.lm_weight, word_score=args.word_score,
                                      chunk_seconds=args.chunk_seconds, precision=args.precision)


def run_evaluate(args: argparse.Namespace) -> int:
    from cssl.evaluation import evaluate_manifest

    out = args.out or args.checkpoint.with_name(f"{args.checkpoint.stem}_{args.manifest.stem}.jsonl")
    ev = evaluate_manifest(_recognizer(args), args.manifest, out)
    print(f"{args.manifest}: {ev.utterances} utterances ({ev.skipped} skipped), {ev.audio_s / 60:.1f} min of audio")
    print(f"WER {ev.wer:.4f}  CER {ev.cer:.4f}  RTF {ev.rtf:.4f}  word-confidence ECE {ev.ece:.4f}  "
          f"({'beam + LM' if args.lm else 'greedy'})")
    print(f"per-utterance results: {out}")
    return 0


def run_transcribe(args: argparse.Namespace) -> int:
    rec = _recognizer(args)
    files = []
    for item in args.inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            files.append(item)
    sink = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    try:
        for path in files:
            result = rec.transcribe(path)
            if sink:
                sink.write(json.dumps({"audio": str(path), "text": result.text, "seconds": result.seconds,
                                       "words": [w.__dict__ for w in result.words]}) + "\n")
            else:
                print(f"{path}\t{result.text}")
    finally:
        if sink:
            sink.close()
    return 0
