"""``cssl data ...``: build manifests from folders, synthesize the demo corpus, build vocabularies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cssl.cli.options import force_arg
from cssl.data.policy import AUDIO_EXTENSIONS, MAX_CHANNELS, MIN_RATE, SCAN_WORKERS
from cssl.utils.errors import UsageError


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``data`` command group."""
    group = groups.add_parser("data", help="audio data: manifests, demo corpus, vocabulary", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = group.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    p = commands.add_parser("manifest", help="scan a folder of audio files into a manifest", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("folder", type=Path, help="folder tree holding the audio files")
    p.add_argument("out", type=Path, help="manifest to write: .tsv (fairseq) or .jsonl (NeMo)")
    p.add_argument("--labels", choices=["none", "librispeech", "sidecar", "folder"], default="none",
                   help="transcripts from LibriSpeech *.trans.txt, from stem.txt beside each file, or the "
                        "parent folder's name (keyword corpora: yes/clip.wav says YES)")
    p.add_argument("--include", nargs="+", default=[], metavar="GLOB",
                   help="only files whose path (relative to FOLDER) matches one of these")
    p.add_argument("--exclude", nargs="+", default=[], metavar="GLOB", help="leave out files matching these")
    p.add_argument("--speaker-pattern", default=None, metavar="REGEX",
                   help="regex on the file name with a group named speaker, e.g. '^(?P<speaker>[^_]+)_' "
                        "(written into .jsonl manifests)")
    p.add_argument("--ext", nargs="+", default=list(AUDIO_EXTENSIONS), help="audio file endings")
    p.add_argument("--workers", type=int, default=SCAN_WORKERS, help="parallel worker processes")
    p.add_argument("--headers-only", action="store_true", help="read headers only (fast, finds fewer bad files)")
    p.add_argument("--min-rate", type=int, default=MIN_RATE, help="reject files below this rate (Hz)")
    p.add_argument("--max-channels", type=int, default=MAX_CHANNELS, help="reject files with more channels")
    p.set_defaults(func=run_manifest)

    p = commands.add_parser("split", help="split a manifest into train, dev and test (speaker-disjoint by default)",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("manifest", type=Path)
    p.add_argument("--by", choices=["speaker", "utterance"], default="speaker",
                   help="speaker: no speaker in two parts (needs speakers, e.g. from --speaker-pattern)")
    p.add_argument("--dev", type=float, default=0.1, help="share of the utterances for dev")
    p.add_argument("--test", type=float, default=0.2, help="share of the utterances for test")
    p.add_argument("--seed", type=int, default=0, help="seeds the shuffle of speakers or utterances")
    p.set_defaults(func=run_split)

    p = commands.add_parser("synth", help="synthesize the multi-speaker demo corpus with eSpeak NG", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="corpus folder")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--hours", type=float, default=None, help="total audio to generate")
    size.add_argument("--utterances", type=int, default=None, help="number of utterances to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=None, help="use only the N most common lexicon words")
    p.add_argument("--speakers", type=int, default=48, help="speakers of the unlabeled, train and dev splits")
    p.add_argument("--keywords", type=Path, default=None, metavar="WORDS.txt",
                   help="every utterance says one word of this list (one or more per line): a keyword corpus")
    p.add_argument("--workers", type=int, default=SCAN_WORKERS)
    p.set_defaults(func=run_synth)

    p = commands.add_parser("align", help="phone alignments of transcribed speech, by eSpeak NG synthesis and DTW",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                            description="Speaks each transcript with eSpeak NG at the recording's pace and aligns the "
                                        "two by dynamic time warping of MFCC frames; writes NAME.phones.jsonl beside "
                                        "the manifest, which cssl probe and the pretraining probe read. English "
                                        "transcripts (or another eSpeak NG voice's language, --voice).")
    p.add_argument("manifest", type=Path, help="labeled manifest (.tsv with .wrd, or .jsonl with text)")
    p.add_argument("--out", type=Path, default=None, help="alignment file (default: NAME.phones.jsonl beside the manifest)")
    p.add_argument("--voice", default="en-us", help="eSpeak NG voice that speaks the transcripts")
    p.add_argument("--utterances", type=int, default=None, help="align only the first N entries")
    p.set_defaults(func=run_align)

    p = commands.add_parser("vocab", help="build the character vocabulary of a labeled manifest", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("manifest", type=Path)
    p.add_argument("out", type=Path, help="vocabulary JSON to write")
    p.add_argument("--min-count", type=int, default=1, help="drop characters seen fewer times")
    p.set_defaults(func=run_vocab)

    p = commands.add_parser("stats", help="print a manifest's size and length distribution", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("manifest", type=Path)
    p.set_defaults(func=run_stats)

    p = commands.add_parser("shard", help="write a manifest as tar shards (WebDataset layout) with an index",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                            description="Each utterance becomes KEY.<ext> (the audio file's bytes, compressed as they "
                                        "are) and KEY.json (text, speaker, length) in shard-NNNNNN.tar; index.json lists "
                                        "the shards. For streaming corpora too large to list in memory.")
    p.add_argument("manifest", type=Path)
    p.add_argument("out", type=Path, help="folder for the shards and index.json")
    p.add_argument("--shard-hours", type=float, default=1.0, help="audio per shard")
    force_arg(p)
    p.set_defaults(func=run_shard)

    p = commands.add_parser("dedup", help="drop exact and near-duplicate utterances; --against lists leaks into a test set",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                            description="Exact duplicates have the same decoded samples; near duplicates are one "
                                        "recording re-encoded, with another gain, trimmed by up to 100 ms or with light "
                                        "noise (log-mel fingerprints, a faiss index of their summaries, then aligned "
                                        "frames compared). Writes OUT (the first of each group kept), OUT.dropped.tsv "
                                        "(each dropped file, its twin, the similarity and the kind) and, for unreadable "
                                        "files, OUT.rejects.tsv.")
    p.add_argument("manifest", type=Path)
    p.add_argument("out", type=Path, help="manifest of the kept utterances")
    p.add_argument("--against", type=Path, default=None, metavar="TEST",
                   help="also drop (and list) utterances that duplicate one of this manifest's: a leakage check")
    p.add_argument("--threshold", type=float, default=None,
                   help="frame similarity of a near duplicate (default: the one chosen on the planted benchmark)")
    force_arg(p)
    p.set_defaults(func=run_dedup)


def run_manifest(args: argparse.Namespace) -> int:
    from cssl.data.manifest import write_manifest
    from cssl.data.scan import ScanConfig, scan_folder

    if args.speaker_pattern and args.out.suffix == ".tsv":
        raise UsageError(f"{args.out}: fairseq .tsv manifests hold no speakers; write a .jsonl manifest "
                         "to keep the speakers of --speaker-pattern")
    cfg = ScanConfig(
        extensions=tuple(args.ext), labels=args.labels, decode=not args.headers_only,
        min_rate=args.min_rate, max_channels=args.max_channels, workers=args.workers,
        include=tuple(args.include), exclude=tuple(args.exclude), speaker_pattern=args.speaker_pattern,
    )
    manifest, rejects = scan_folder(args.folder, cfg)
    write_manifest(manifest, args.out)
    rejects_path = args.out.with_name(args.out.stem + ".rejects.tsv")
    rejects.write(rejects_path)
    print(f"{args.out}: {len(manifest)} utterances, {manifest.hours:.2f} h; {rejects.summary()}")
    if len(rejects):
        print(f"skipped files and reasons: {rejects_path}")
    return 0 if len(manifest) else 1


def run_split(args: argparse.Namespace) -> int:
    from cssl.data.manifest import read_manifest, write_manifest
    from cssl.data.split import split_manifest

    parts = split_manifest(read_manifest(args.manifest), args.dev, args.test, args.by, args.seed, str(args.manifest))
    for name, part in parts.items():
        if not len(part):  # a share of 0 asked for
            continue
        out = args.manifest.with_name(f"{args.manifest.stem}.{name}{args.manifest.suffix}")
        write_manifest(part, out)
        speakers = len({e.speaker for e in part if e.speaker is not None})
        print(f"{out}: {len(part)} utterances, {part.hours:.2f} h" + (f", {speakers} speakers" if speakers else ""))
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from cssl.synth.corpus import synthesize_corpus

    keywords: list[str] = []
    if args.keywords is not None:
        if not args.keywords.is_file():
            raise UsageError(f"--keywords {args.keywords}: no such file (give a word list, one or more per line)")
        keywords = list(dict.fromkeys(args.keywords.read_text(encoding="utf-8").lower().split()))
        if not keywords:
            raise UsageError(f"--keywords {args.keywords}: the file lists no word")
    summary = synthesize_corpus(
        args.out, hours=args.hours, num_utterances=args.utterances, seed=args.seed,
        workers=args.workers, vocab_size=args.vocab_size, num_speakers=args.speakers, keywords=keywords,
    )
    print(summary.table())
    return 0


def run_align(args: argparse.Namespace) -> int:
    from cssl.data.alignment import alignment_path
    from cssl.data.manifest import read_manifest
    from cssl.synth.align import AlignConfig, align_manifest
    from cssl.utils.progress import ProgressLine

    out = args.out or alignment_path(args.manifest)
    if out.resolve() == args.manifest.resolve():
        raise UsageError(f"--out {out} is the manifest itself; give another file")
    total = len(read_manifest(args.manifest))
    meter = ProgressLine("align", total if args.utterances is None else min(total, args.utterances))
    report = align_manifest(args.manifest, out, AlignConfig(voice=args.voice), args.utterances,
                            lambda done, _: meter.update(done))
    meter.close()
    print(f"{out}: {report.aligned} utterances aligned in {report.seconds:.0f} s; {len(report.skipped)} skipped"
          + "".join(f"\n  {path}: {why}" for path, why in list(report.skipped.items())[:10]))
    return 0


def run_vocab(args: argparse.Namespace) -> int:
    from cssl.data.manifest import ManifestError, read_manifest
    from cssl.text.normalize import normalization_report
    from cssl.text.vocab import Vocabulary

    manifest = read_manifest(args.manifest)
    if not manifest.labeled:
        raise ManifestError(f"{args.manifest}: has entries without transcripts; a vocabulary needs labels")
    texts = [e.text or "" for e in manifest]
    vocab = Vocabulary.build(texts, min_count=args.min_count)
    vocab.save(args.out)
    print(f"{args.out}: {len(vocab)} symbols: {' '.join(vocab.symbols)}")
    print(f"normalisation of the transcripts: {normalization_report(texts).summary()}")
    rare = vocab.unknown_characters(texts)
    if rare:
        print(f"left out (seen fewer than --min-count {args.min_count} times, encoded as <unk>): "
              + ", ".join(f"{ch!r} x{n}" for ch, n in rare.most_common()))
    return 0


def run_shard(args: argparse.Namespace) -> int:
    from cssl.data.manifest import read_manifest
    from cssl.data.shards import read_index, write_shards
    from cssl.utils.io import check_outputs, replace_folder

    check_outputs([args.out], [args.manifest], force=args.force)
    manifest = read_manifest(args.manifest)
    replace_folder(args.out, lambda tmp: write_shards(manifest, tmp, args.shard_hours))  # no stale shard left
    index = read_index(args.out)
    size = sum(s.bytes for s in index.shards) / 2**20
    print(f"{args.out}: {len(index.shards)} shards, {index.entries} utterances, {index.hours:.2f} h, {size:.1f} MiB")
    return 0


def run_dedup(args: argparse.Namespace) -> int:
    from cssl.data import dedup
    from cssl.data.manifest import Manifest, read_manifest, write_manifest
    from cssl.data.rejects import Rejects
    from cssl.utils.errors import UserError
    from cssl.utils.io import atomic_write_lines, check_outputs

    dropped_path = args.out.with_name(args.out.stem + ".dropped.tsv")
    rejects_path = args.out.with_name(args.out.stem + ".rejects.tsv")
    check_outputs([args.out, dropped_path], [args.manifest, args.against], force=args.force)
    threshold = dedup.THRESHOLD if args.threshold is None else args.threshold
    manifest, rejects = read_manifest(args.manifest), Rejects()
    entries, prints = dedup.fingerprint_manifest(manifest, rejects)
    if not entries:
        rejects.write(rejects_path)
        raise UserError(f"{args.manifest}: no readable utterance ({rejects.summary()}; listed in {rejects_path})")
    rows = [(m, entries[m.twin].path, m.kind) for m in dedup.within(prints, threshold)]
    leaks, test_rejects = 0, Rejects()
    test_rejects_path = args.out.with_name(args.out.stem + ".against-rejects.tsv")
    if args.against is not None:
        test = read_manifest(args.against)
        test_entries, test_prints = dedup.fingerprint_manifest(test, test_rejects)
        found = {m.index for m, _, _ in rows}
        for m in dedup.against(prints, test_prints, threshold):
            leaks += 1
            if m.index not in found:
                rows.append((m, str(test.audio_path(test_entries[m.twin])), f"{m.kind} in {args.against.name}"))
    dropped = {m.index for m, _, _ in rows}
    kept = [e for i, e in enumerate(entries) if i not in dropped]
    if not kept:
        raise UserError(f"{args.manifest}: every utterance duplicates another one or the test set; nothing written "
                        f"(is --against the same data?)")
    write_manifest(Manifest(manifest.root, kept), args.out)
    lines = ["path\ttwin\tsimilarity\tkind"] + [
        f"{entries[m.index].path}\t{twin}\t{m.similarity:.3f}\t{kind}" for m, twin, kind in sorted(rows, key=lambda r: r[0].index)]
    atomic_write_lines(dropped_path, lines)
    if len(rejects):
        rejects.write(rejects_path)
    if len(test_rejects):  # test files that could not be checked for leaks
        test_rejects.write(test_rejects_path)
    kinds = {k: sum(1 for _, _, kind in rows if kind == k) for k in ("exact", "near")}
    print(f"{args.out}: kept {len(kept)} of {len(manifest)} utterances; dropped {kinds['exact']} exact and "
          f"{kinds['near']} near duplicates" + (f", {leaks} that duplicate {args.against}" if args.against else "")
          + f" (listed in {dropped_path})" + (f"; {len(rejects)} unreadable ({rejects_path})" if len(rejects) else "")
          + (f"; {len(test_rejects)} of {args.against}'s files unreadable, not checked for leaks ({test_rejects_path})"
             if len(test_rejects) else ""))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from cssl.data.manifest import read_manifest

    manifest = read_manifest(args.manifest)
    secs = sorted(e.duration for e in manifest)
    if not secs:
        print(f"{args.manifest}: empty")
        return 1
    pick = lambda q: secs[min(len(secs) - 1, int(q * len(secs)))]  # noqa: E731
    speakers = {e.speaker for e in manifest if e.speaker is not None}
    print(f"{args.manifest}: {len(secs)} utterances, {manifest.hours:.2f} h, "
          f"labeled={manifest.labeled}, speakers={len(speakers) or 'unknown'}")
    print(f"seconds: min {secs[0]:.2f}  p50 {pick(0.5):.2f}  p90 {pick(0.9):.2f}  max {secs[-1]:.2f}", file=sys.stdout)
    return 0
