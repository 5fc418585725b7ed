"""The ``cssl`` command: ``cssl data manifest|synth|vocab|stats ...``, ``cssl lm build ...``,
``cssl evaluate ...``, ``cssl transcribe ...``.

Each command group lives in its own module and registers its subcommands on the
parser; ``main`` dispatches to the function a subcommand set as ``func``.
"""

from __future__ import annotations

import argparse
import sys

from cssl import __version__
from cssl.cli import asr, data, lm


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one sub-parser per command group)."""
    parser = argparse.ArgumentParser(prog="cssl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cssl {__version__}")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    data.register(groups)
    lm.register(groups)
    asr.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cssl`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as err:
        print(f"cssl: error: {err}", file=sys.stderr)
        return 2
