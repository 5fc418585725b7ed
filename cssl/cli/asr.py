"""``cssl evaluate CKPT MANIFEST``, ``cssl transcribe CKPT FILES_OR_DIR`` and ``cssl pseudo-label CKPT MANIFEST``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cssl.cli.options import decoder_inputs, ensemble_arg, floats, force_arg, set_threads, threads_arg
from cssl.data.policy import AUDIO_EXTENSIONS
from cssl.utils.errors import UsageError
from cssl.utils.io import check_outputs


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``evaluate`` and ``transcribe`` commands."""
    p = groups.add_parser("evaluate", help="WER, CER and real-time factor of a checkpoint on a labeled manifest", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="fine-tuning checkpoint (best.pt)")
    p.add_argument("manifest", type=Path, help="labeled manifest (.tsv with .wrd/.ltr, or .jsonl)")
    p.add_argument("--out", type=Path, default=None, help="per-utterance JSONL (default: beside the checkpoint, "
                   "replacing the previous report of the same evaluation)")
    p.add_argument("--max-skipped", type=float, default=0.0, metavar="SHARE",
                   help="exit with status 3 when a larger share of the utterances could not be scored")
    _decoding_args(p)
    p.set_defaults(func=run_evaluate)

    p = groups.add_parser("transcribe", help="transcribe audio files or folders (text, or JSONL with word times)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="fine-tuning checkpoint (best.pt)")
    p.add_argument("inputs", type=Path, nargs="+", help="audio files or folders")
    p.add_argument("--jsonl", type=Path, default=None, help="write one JSON object per file here")
    p.add_argument("--stream", action="store_true", help="read each file as if it arrived live, in chunks: partial "
                   "results on stderr, the final one as usual (Recognizer.stream)")
    p.add_argument("--chunk-ms", type=float, default=160.0, help="with --stream: the chunk size")
    p.add_argument("--realtime", action="store_true", help="with --stream: pace the chunks by the clock")
    p.add_argument("--left-seconds", type=float, default=4.0, help="with --stream: audio kept before the first "
                   "undecided frame")
    p.add_argument("--right-seconds", type=float, default=0.8, help="with --stream: audio after a frame before "
                   "its output is final")
    p.add_argument("--update-seconds", type=float, default=0.4, help="with --stream: new audio between model runs")
    _decoding_args(p)
    p.set_defaults(func=run_transcribe)

    p = groups.add_parser("pseudo-label", help="transcribe unlabeled audio into a training manifest for self-training "
                          "(the most confident hypotheses), optionally joined with the real labels",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="fine-tuning checkpoint (best.pt), best calibrated")
    p.add_argument("manifest", type=Path, help="the audio to transcribe (a manifest; transcripts in it are only "
                   "used to report the pseudo-labels' WER)")
    p.add_argument("--out", type=Path, required=True, help="the manifest written (.tsv or .jsonl): kept "
                   "pseudo-labels, then --add's entries; every hypothesis with its confidence goes beside it "
                   "(OUT's stem + .hypotheses.jsonl)")
    p.add_argument("--keep", type=float, default=0.5, help="share of the utterances kept, most confident first")
    p.add_argument("--min-confidence", type=float, default=0.0, help="keep no hypothesis under this confidence "
                   "(geometric-mean probability per symbol of its text, 0-1)")
    p.add_argument("--add", type=Path, default=None, metavar="LABELED",
                   help="a labeled manifest (the real labels) whose entries join the kept pseudo-labels in --out")
    _decoding_args(p)
    p.set_defaults(func=run_pseudo_label)


def _decoding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lm", default=None, help="ARPA language model for beam search (cssl lm build)")
    p.add_argument("--lexicon", default=None, metavar="WORDS.txt",
                   help="restrict beam search to these words (one or more per line), with or without --lm")
    p.add_argument("--grammar", default=None, metavar="PHRASES.txt",
                   help="the utterance is exactly one of these lines (command and control); not with --lm/--lexicon")
    p.add_argument("--speeds", type=_speeds, default=(1.0,), metavar="F,F,...",
                   help="with --grammar: also score the audio at these speed factors (e.g. 0.9,1.0,1.1) and pick "
                        "the phrase with the highest mean log-likelihood (test-time augmentation for unseen voices)")
    p.add_argument("--beam-size", type=int, default=50, help="hypotheses kept by beam search")
    p.add_argument("--lm-weight", type=float, default=2.0, help="LM weight (choose it with cssl lm tune)")
    p.add_argument("--word-score", type=float, default=0.0, help="score added per word (cssl lm tune)")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="longer audio is decoded in overlapping chunks")
    p.add_argument("--precision", default="no", choices=("no", "bf16", "fp16", "auto"),
                   help="autocast for the model (auto: bf16 where the hardware has it natively)")
    ensemble_arg(p)
    threads_arg(p)
    force_arg(p)



def _speeds(text: str) -> tuple[float, ...]:
    speeds = floats(text)
    if not speeds or any(not f > 0 for f in speeds):
        raise argparse.ArgumentTypeError(f"--speeds takes positive speed factors such as 0.9,1.0,1.1, got {text!r}")
    return speeds


def _recognizer(args: argparse.Namespace):
    from cssl.decode.recognizer import Recognizer

    set_threads(args)
    rec = Recognizer.from_checkpoint(args.checkpoint, ensemble=args.ensemble, lm=args.lm, beam_size=args.beam_size,
                                     lm_weight=args.lm_weight, word_score=args.word_score,
                                     chunk_seconds=args.chunk_seconds, precision=args.precision,
                                     lexicon=args.lexicon, grammar=args.grammar, speeds=args.speeds)
    if rec.grammar is not None and rec.grammar.dropped:
        print(f"warning: {args.grammar}: {len(rec.grammar.dropped)} phrase(s) use characters the model cannot write "
              f"and are left out: {', '.join(rec.grammar.dropped[:5])}", file=sys.stderr)
    if rec.grammar is not None and len(rec.grammar.phrases) == 1:
        print(f"warning: {args.grammar}: one phrase to choose from: every file gets it, with confidence 1.0 whatever "
              "it says; list the other things people may say (or a filler phrase) for a confidence that means "
              "something", file=sys.stderr)
    return rec


def _decoding(args: argparse.Namespace) -> str:
    models = f", ensemble of {1 + len(args.ensemble)} models" if args.ensemble else ""
    if args.grammar:
        speeds = f", speeds {','.join(f'{f:g}' for f in args.speeds)}" if args.speeds != (1.0,) else ""
        return f"grammar: {args.grammar}{speeds}{models}"
    parts = (["LM"] if args.lm else []) + (["lexicon"] if args.lexicon else [])
    return ("beam + " + " + ".join(parts) if parts else "greedy") + models


def run_evaluate(args: argparse.Namespace) -> int:
    from cssl.score.evaluation import evaluate_manifest

    out = args.out or args.checkpoint.with_name(f"{args.checkpoint.stem}_{args.manifest.stem}.jsonl")
    check_outputs([out], [*decoder_inputs(args), args.manifest], force=args.force or args.out is None)
    ev = evaluate_manifest(_recognizer(args), args.manifest, out)
    for note in ev.notes:
        print(note)
    print(f"{args.manifest}: scored {ev.utterances} of {ev.listed} utterances ({ev.rejects.summary()}), "
          f"{ev.audio_s / 60:.1f} min of audio")
    print(f"WER {ev.wer:.4f}  CER {ev.cer:.4f}  RTF {ev.rtf:.4f}  word-confidence ECE {ev.ece:.4f}  "
          f"({_decoding(args)})")
    print(f"per-utterance results: {out}")
    if ev.skipped:
        rejects = out.with_name(out.stem + ".rejects.tsv")
        ev.rejects.write(rejects)
        print(f"not scored, with reasons: {rejects}")
    if ev.skipped_share > args.max_skipped:
        print(f"cssl evaluate: {ev.skipped} of {ev.listed} utterances ({ev.skipped_share:.1%}) were not scored, "
              f"more than --max-skipped {args.max_skipped:g}: these figures do not cover the whole set",
              file=sys.stderr)
        return 3
    return 0


def run_transcribe(args: argparse.Namespace) -> int:
    from cssl.data.audio import AudioError
    from cssl.data.rejects import Rejects

    rec = _recognizer(args)
    files = []
    for item in args.inputs:
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            files.append(item)
    check_outputs([args.jsonl], [*decoder_inputs(args), *files], force=args.force)
    rejects = Rejects()
    done = 0
    sink = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    try:
        for path in files:
            try:
                result, extra = _transcribe_one(rec, path, args)
            except AudioError as err:
                rejects.add(err.path, err.reason, err.detail)
                print(f"skipped {err}", file=sys.stderr)
                continue
            done += 1
            if sink:
                sink.write(json.dumps({"audio": str(path), "text": result.text, "seconds": result.seconds,
                                       "log_likelihood": result.log_likelihood,
                                       "words": [w.__dict__ for w in result.words], **extra}) + "\n")
                sink.flush()
            print(f"{path}\t{result.text}", flush=True)
    finally:
        if sink:
            sink.close()
    summary = f"transcribed {done} of {len(files)} files; {rejects.summary()}"
    if args.jsonl:
        summary += f"; JSON lines: {args.jsonl}"
    if len(rejects) and args.jsonl:
        path = args.jsonl.with_name(args.jsonl.stem + ".rejects.tsv")
        rejects.write(path)
        summary += f"; skipped files and reasons: {path}"
    print(summary, file=sys.stderr)
    return 0 if done else 1


def _transcribe_one(rec, path: Path, args: argparse.Namespace) -> tuple:
    """The transcript of one file, whole or streamed (``--stream``), and what the JSON line adds for a stream."""
    if not args.stream:
        return rec.transcribe(path), {}
    from cssl.data.audio import load_audio
    from cssl.decode.streaming import stream_audio

    def show(partial) -> None:
        print(f"  {partial.seconds:6.2f} s  {partial.stable} | {partial.text[len(partial.stable):].strip()}",
              file=sys.stderr, flush=True)

    stream = rec.stream(args.left_seconds, args.right_seconds, args.update_seconds)
    done = stream_audio(stream, load_audio(path), args.chunk_ms / 1000, args.realtime, on_partial=show)
    return done.transcript, {"latency_ms": round(done.latency * 1000, 1), "partials": len(done.partials)}


def run_pseudo_label(args: argparse.Namespace) -> int:
    from cssl.data.manifest import read_manifest, write_manifest
    from cssl.decode.pseudo_label import pseudo_label

    if not 0 < args.keep <= 1:
        raise UsageError(f"--keep is a share of the utterances in (0, 1], got {args.keep}")
    added = None
    if args.add is not None:
        added = read_manifest(args.add)
        if not added.labeled:
            raise UsageError(f"--add {args.add}: every entry needs a transcript (it holds the real labels)")
    check_outputs([args.out], [*decoder_inputs(args), args.manifest, args.add], force=args.force)
    labels = pseudo_label(_recognizer(args), read_manifest(args.manifest), args.keep, args.min_confidence)
    write_manifest(labels.manifest(added), args.out)
    hypotheses = args.out.with_name(args.out.stem + ".hypotheses.jsonl")
    with open(hypotheses, "w", encoding="utf-8") as sink:
        for p, kept in zip(labels.labels, labels.kept):
            sink.write(json.dumps({"audio": p.entry.path, "hypothesis": p.entry.text, "confidence": round(p.confidence, 4),
                                   "kept": kept, "reference": p.reference}) + "\n")
    kept = sum(labels.kept)
    print(f"{args.manifest}: {len(labels.labels)} transcribed ({_decoding(args)}), {labels.rejects.summary()}; "
          f"kept {kept} ({labels.kept_seconds / 60:.1f} min)"
          + (f" and {len(added)} real labels ({added.hours * 60:.1f} min)" if added is not None else ""))
    for what, rates in (("kept", labels.error_rates(kept_only=True)), ("all", labels.error_rates(kept_only=False))):
        if rates is not None:
            print(f"pseudo-label quality against the manifest's transcripts ({what}): WER {rates.wer:.4f} "
                  f"CER {rates.cer:.4f}")
    print(f"training manifest: {args.out}; every hypothesis: {hypotheses}")
    if len(labels.rejects):
        rejects = args.out.with_name(args.out.stem + ".rejects.tsv")
        labels.rejects.write(rejects)
        print(f"skipped files and reasons: {rejects}")
    if not kept:
        why = ("no file could be read" if not labels.labels else
               f"no hypothesis reached --min-confidence {args.min_confidence:g}" if args.min_confidence > 0 else
               "nothing was kept")
        print(f"cssl pseudo-label: {why}; {args.out} holds no pseudo-label", file=sys.stderr)
    return 0 if kept else 1
