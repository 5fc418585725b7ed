"""Contrastive pretraining (stage 1) on unlabeled audio.

One device (CPU or GPU)::

    python -m pretrain configs/pretrain/tiny.yaml data.manifest=corpus/unlabeled.tsv

Several GPUs (on a machine without GPUs the same command runs N CPU processes over gloo)::

    accelerate launch --multi_gpu --num_processes 4 -m pretrain configs/pretrain/base.yaml data.manifest=...

Arguments after the YAML file are ``key=value`` overrides (``optim.lr=1e-3``,
``resume=auto``). ``--print-config`` shows every key with its value and meaning.
"""

from __future__ import annotations

import argparse
import sys

from cssl.config import ConfigError, describe, load_config
from pretrain.config import PretrainConfig


def parse(argv: list[str] | None = None) -> PretrainConfig | None:
    parser = argparse.ArgumentParser(prog="python -m pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML file overriding the defaults")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = parser.parse_args(argv)
    config, overrides = args.config, args.overrides
    if config is not None and "=" in config:  # only overrides were given
        config, overrides = None, [config, *overrides]
    cfg = load_config(PretrainConfig, config, overrides)
    if args.print_config:
        print("\n".join(describe(cfg)))
        return None
    return cfg


def cli(argv: list[str] | None = None) -> int:
    try:
        cfg = parse(argv)
    except ConfigError as err:
        print(f"pretrain: config error: {err}", file=sys.stderr)
        return 2
    if cfg is None:
        return 0
    if not cfg.data.manifest:
        print("pretrain: config error: data.manifest is not set; give data.manifest=PATH", file=sys.stderr)
        return 2
    from pretrain.train import main

    main(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
