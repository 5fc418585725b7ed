"""``cssl lm build TEXT OUT.arpa``: a Kneser-Ney word n-gram model from transcripts;
``cssl lm tune CKPT DEV LM.arpa``: the beam decoder's LM weight and word score, chosen on dev."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cssl.cli.options import ensemble_arg, floats, set_threads, threads_arg
from cssl.decode.lm_tuning import LEXICON_WORD_SCORES, LM_WEIGHTS, WORD_SCORES


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``lm`` command group."""
    group = groups.add_parser("lm", help="n-gram language models for beam search", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = group.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    p = commands.add_parser("build", help="build an ARPA model (interpolated Kneser-Ney) from text", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("text", type=Path, help="text file (one sentence per line) or a labeled manifest")
    p.add_argument("out", type=Path, help="ARPA file to write")
    p.add_argument("--order", type=int, default=3, help="n-gram order")
    p.set_defaults(func=run_build)

    p = commands.add_parser("tune", help="choose the LM weight and word score of beam search (LM and/or word list) on a labeled dev set", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="fine-tuning checkpoint")
    p.add_argument("manifest", type=Path, help="labeled dev manifest (not the test set)")
    p.add_argument("lm", type=Path, nargs="?", default=None, help="ARPA language model (optional with --lexicon)")
    p.add_argument("--lexicon", type=Path, default=None, metavar="WORDS.txt",
                   help="restrict the search to these words (without an LM: only the word score is tuned)")
    p.add_argument("--lm-weights", type=floats, default=LM_WEIGHTS, help="comma-separated grid")
    p.add_argument("--word-scores", type=floats, default=None,
                   help=f"comma-separated grid (default {','.join(f'{x:g}' for x in WORD_SCORES)} with an LM, "
                        f"{','.join(f'{x:g}' for x in LEXICON_WORD_SCORES)} with a word list alone)")
    p.add_argument("--beam-size", type=int, default=50, help="hypotheses kept by beam search")
    ensemble_arg(p)
    threads_arg(p)
    p.set_defaults(func=run_tune)


def run_build(args: argparse.Namespace) -> int:
    from cssl.data.manifest import read_manifest
    from cssl.decode.lm import build_ngram, write_arpa

    if args.text.suffix in (".tsv", ".jsonl", ".json"):
        sentences = [e.text or "" for e in read_manifest(args.text)]
    else:
        sentences = args.text.read_text(encoding="utf-8").splitlines()
    model = build_ngram(sentences, args.order)
    write_arpa(model, args.out)
    sizes = ", ".join(f"{len(model.logprob[n])} {n + 1}-grams" for n in range(model.order))
    print(f"{args.out}: {sizes}")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from cssl.decode.lm_tuning import tune_lm
    from cssl.decode.recognizer import Recognizer

    set_threads(args)
    result = tune_lm(Recognizer.from_checkpoint(args.checkpoint, ensemble=args.ensemble), args.manifest, args.lm, args.lm_weights,
                     args.word_scores, args.beam_size, log=print, lexicon=args.lexicon)
    print(f"\n{args.manifest}: {result.utterances} utterances ({result.skipped} skipped); dev WER by pair:\n")
    print(result.table())
    print(f"\nbest: --lm-weight {result.lm_weight:g} --word-score {result.word_score:g} "
          f"(dev WER {result.wer:.4f}, CER {result.cer:.4f})")
    for edge in result.edges():
        print(f"warning: the best pair has the grid's {edge}; a wider grid (--lm-weights, --word-scores) "
              "may find a better one", file=sys.stderr)
    return 0
