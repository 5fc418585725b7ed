"""The training stages on the command line: ``cssl pretrain|finetune|calibrate|release|demo``.

Each stage keeps its own command line: everything after the command's name goes to the stage's
parser as it is, so ``cssl pretrain CONFIG key=value`` is ``python -m pretrain CONFIG key=value``
and ``accelerate launch -m cssl pretrain ...`` is ``accelerate launch -m pretrain ...``.

The config-driven stages share one parser (:func:`run_stage`): ``CONFIG.yaml [key=value ...]
[--print-config] [--debug]``. Config errors, bad data and other user errors print one message
and exit with status 2 (``--debug`` or ``CSSL_DEBUG=1`` shows their traceback). Settings that
are legal but probably unintended (a warmup longer than the run) print a warning and go on.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cssl.utils.config import describe, load_config
from cssl.utils.errors import run_reporting


@dataclass(frozen=True)
class Stage:
    """A command whose arguments its own module parses."""

    module: str
    """Module with ``main(argv, prog) -> int``."""
    usage: str
    """Arguments, as ``cssl --help`` shows them."""
    summary: str
    """What it does, in one line."""


STAGES = {
    "pretrain": Stage("pretrain.cli", "CONFIG [key=value ...]", "stage 1: contrastive pretraining on unlabeled audio"),
    "finetune": Stage("finetune.cli", "CONFIG [key=value ...]", "stage 2: CTC fine-tuning, early stopping, --cv K"),
    "calibrate": Stage("finetune.calibrate", "CKPT DEV", "fit a fine-tuned model's temperature on dev"),
    "release": Stage("pretrain.release", "CKPT OUT", "a slim pretrained model from a training checkpoint"),
    "demo": Stage("cssl.experiments.demo", "[--out DIR]", "the demo: corpus, pretraining, fine-tuning, scoring"),
}


def stage_of(argv: list[str]) -> tuple[str, list[str], bool] | None:
    """``(stage, its arguments, --debug given before it)`` when the command names a stage, else None."""
    debug = False
    for i, arg in enumerate(argv):
        if arg == "--debug":
            debug = True
        elif arg.startswith("-"):
            return None  # --help, --version: the main parser's
        else:
            return (arg, argv[i + 1:], debug) if arg in STAGES else None
    return None


def run_stage_command(name: str, argv: list[str], debug: bool) -> int:
    """Runs stage ``name`` on ``argv`` (``--debug`` passed on where it was given before the name)."""
    main = importlib.import_module(STAGES[name].module).main
    if debug and "--debug" not in argv:
        argv = [*argv, "--debug"]
    return int(main(argv, prog=f"cssl {name}") or 0)


def run_stage(prog: str, doc: str, config_cls: type, check: Callable[[Any], str | None],
              main: Callable[[Any], Any], argv: list[str] | None = None,
              flags: dict[str, tuple[str, str]] | None = None,
              warn: Callable[[Any], list[str]] | None = None) -> int:
    """Parses the config, checks it (``check`` returns an error message or None), runs ``main``.

    ``flags`` maps an option (``--cv``) to the config key it sets and its help text;
    ``warn`` lists warnings about legal but doubtful settings.
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML file overriding the defaults")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--print-config", action="store_true", help="print every key, its value and meaning, and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors too (or CSSL_DEBUG=1)")
    flags = flags or {}
    for flag, (key, text) in flags.items():
        parser.add_argument(flag, dest=key, default=None, metavar="VALUE", help=f"{text} (sets {key})")
    args = parser.parse_args(argv)
    config, overrides = args.config, args.overrides
    if config is not None and "=" in config:  # only overrides were given
        config, overrides = None, [config, *overrides]
    overrides = [*overrides, *(f"{key}={getattr(args, key)}" for key, _ in flags.values() if getattr(args, key) is not None)]

    def body() -> int:
        cfg = load_config(config_cls, config, overrides)
        if args.print_config:
            print("\n".join(describe(cfg)))
            return 0
        problem = check(cfg)
        if problem:
            print(f"{prog}: config error: {problem}", file=sys.stderr)
            return 2
        for text in warn(cfg) if warn else []:
            print(f"{prog}: warning: {text}", file=sys.stderr)
        main(cfg)
        return 0

    from cssl.train.runtime import end_processes

    code = run_reporting(prog, body, args.debug)
    if code == 0:
        end_processes(code)
    return code
