"""``cssl evaluate CKPT MANIFEST`` and ``cssl transcribe CKPT FILES_OR_DIR``."""

from __future__ import annotations

import argparse
import json
import sys
import time
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


def _recognizer(args: argparse.Namespace):
    from cssl.recognizer import Recognizer

    return Recognizer.from_checkpoint(args.checkpoint, lm=args.lm, beam_size=args.beam_size,
                                      lm_weight=args.lm_weight, word_score=args.word_score,
                                      chunk_seconds=args.chunk_seconds)


def run_evaluate(args: argparse.Namespace) -> int:
    import jiwer

    from cssl.data.audio import AudioError
    from cssl.data.manifest import read_manifest
    from cssl.metrics import error_rates
    from cssl.text.normalize import normalize_text

    rec = _recognizer(args)
    manifest = read_manifest(args.manifest)
    if not manifest.labeled:
        raise ValueError(f"{args.manifest}: evaluation needs transcripts for every entry")
    out = args.out or args.checkpoint.with_name(f"{args.checkpoint.stem}_{args.manifest.stem}.jsonl")
    refs, hyps, rows, audio_s, skipped = [], [], [], 0.0, 0
    started = time.perf_counter()
    for entry in manifest:
        try:
            result = rec.transcribe(manifest.audio_path(entry))
        except AudioError as err:
            skipped += 1
            print(f"skipped {err}", file=sys.stderr)
            continue
        ref = normalize_text(entry.text or "")
        refs.append(ref)
        hyps.append(result.text)
        audio_s += result.seconds
        m = jiwer.process_words(ref, result.text) if ref else None
        rows.append({
            "audio": entry.path, "reference": ref, "hypothesis": result.text,
            "errors": (m.substitutions + m.deletions + m.insertions) if m else 0,
            "words": len(ref.split()),
            "confidence": (sum(w.confidence for w in result.words) / len(result.words)) if result.words else 0.0,
        })
    elapsed = time.perf_counter() - started
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rates = error_rates(refs, hyps)
    rtf = elapsed / max(audio_s, 1e-9)
    print(f"{args.manifest}: {len(rows)} utterances ({skipped} skipped), {audio_s / 60:.1f} min of audio")
    print(f"WER {rates.wer:.4f}  CER {rates.cer:.4f}  RTF {rtf:.4f}  ({'beam + LM' if args.lm else 'greedy'})")
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
