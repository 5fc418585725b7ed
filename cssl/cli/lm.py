"""``cssl lm build TEXT OUT.arpa``: a Kneser-Ney word n-gram model from transcripts."""

from __future__ import annotations

import argparse
from pathlib import Path

from cssl.data.manifest import read_manifest
from cssl.lm import build_ngram, write_arpa


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``lm`` command group."""
    group = groups.add_parser("lm", help="n-gram language models for beam search")
    commands = group.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    p = commands.add_parser("build", help="build an ARPA model (interpolated Kneser-Ney) from text")
    p.add_argument("text", type=Path, help="text file (one sentence per line) or a labeled manifest")
    p.add_argument("out", type=Path, help="ARPA file to write")
    p.add_argument("--order", type=int, default=3, help="n-gram order")
    p.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    if args.text.suffix in (".tsv", ".jsonl", ".json"):
        sentences = [e.text or "" for e in read_manifest(args.text)]
    else:
        sentences = args.text.read_text(encoding="utf-8").splitlines()
    model = build_ngram(sentences, args.order)
    write_arpa(model, args.out)
    sizes = ", ".join(f"{len(model.logprob[n])} {n + 1}-grams" for n in range(model.order))
    print(f"{args.out}: {sizes}")
    return 0
