"""The ``cssl`` command: data preparation, language models, evaluation and transcription.

Each command group lives in its own module and registers its subcommands on the
parser; ``main`` dispatches to the function a subcommand set as ``func``. Modules that
pull in PyTorch are imported by the command that needs them, so ``cssl --help`` is quick.
"""

from __future__ import annotations

import argparse

from cssl import __version__
from cssl.cli import asr, convert, data, lm, probe
from cssl.errors import run_reporting

DESCRIPTION = """Self-supervised speech representations and CTC speech recognition.

commands:
  cssl data manifest|split|vocab|stats|synth   audio manifests, splits, vocabularies, the demo corpus
  cssl lm build|tune                           n-gram language models for beam search
  cssl evaluate CKPT MANIFEST                  WER, CER, RTF of a fine-tuned checkpoint
  cssl transcribe CKPT FILES_OR_DIRS           text with word times and confidences
  cssl pseudo-label CKPT MANIFEST --out M      self-training labels: the most confident transcripts
  cssl probe CKPT MANIFEST                     how phonetic each level of a model is (PNMI, purities)

training stages: python -m pretrain CONFIG [key=value ...], python -m finetune CONFIG [...]
(--print-config lists every key). User errors print one line; --debug or CSSL_DEBUG=1
shows the traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one sub-parser per command group)."""
    parser = argparse.ArgumentParser(prog="cssl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    data.register(groups)
    lm.register(groups)
    asr.register(groups)
    probe.register(groups)
    convert.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cssl`` console script."""
    args = build_parser().parse_args(argv)
    return run_reporting("cssl", lambda: int(args.func(args) or 0), args.debug)
