"""Shared command line of the training stages: ``CONFIG.yaml [key=value ...] [--print-config]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from cssl.config import ConfigError, describe, load_config


def run_stage(prog: str, doc: str, config_cls: type, check: Callable[[Any], str | None],
              main: Callable[[Any], Any], argv: list[str] | None = None,
              flags: dict[str, tuple[str, str]] | None = None) -> int:
    """Parses the config, checks it (``check`` returns an error message or None), runs ``main``.

    ``flags`` maps an option (``--cv``) to the config key it sets and its help text.
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML file overriding the defaults")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--print-config", action="store_true", help="print every key, its value and meaning, and exit")
    flags = flags or {}
    for flag, (key, text) in flags.items():
        parser.add_argument(flag, dest=key, default=None, metavar="VALUE", help=f"{text} (sets {key})")
    args = parser.parse_args(argv)
    config, overrides = args.config, args.overrides
    if config is not None and "=" in config:  # only overrides were given
        config, overrides = None, [config, *overrides]
    overrides = [*overrides, *(f"{key}={getattr(args, key)}" for key, _ in flags.values() if getattr(args, key) is not None)]
    try:
        cfg = load_config(config_cls, config, overrides)
    except ConfigError as err:
        print(f"{prog}: config error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print("\n".join(describe(cfg)))
        return 0
    problem = check(cfg)
    if problem:
        print(f"{prog}: config error: {problem}", file=sys.stderr)
        return 2
    main(cfg)
    return 0
