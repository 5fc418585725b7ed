"""``cssl convert SRC DST --to hf|fairseq2|torchaudio|cssl``: a wav2vec 2.0 checkpoint in another format."""

from __future__ import annotations

import argparse
from pathlib import Path

from cssl.cli.options import force_arg


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``convert`` command."""
    from cssl.convert import FORMATS, WRITABLE

    p = groups.add_parser(
        "convert", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="convert a wav2vec 2.0 checkpoint between cssl, transformers, fairseq, fairseq2 and torchaudio",
        description=f"Reads SRC in any of {', '.join(FORMATS)} (detected; nothing in the file is executed) and "
                    f"writes DST as --to ({', '.join(WRITABLE)}). Pretrained models keep their quantizer and "
                    "projections where the target format has them; fine-tuned models keep their CTC head and "
                    "vocabulary. A transformers DST is a folder that from_pretrained loads; a fairseq2 DST is "
                    "NAME.pt with its asset card NAME.yaml beside it (pretrained models).")
    p.add_argument("src", type=Path, help="checkpoint file, or transformers folder")
    p.add_argument("dst", type=Path, help="file (cssl, torchaudio, fairseq2) or folder (hf) to write")
    p.add_argument("--to", choices=WRITABLE, required=True, help="format of DST")
    p.add_argument("--model", type=Path, default=None,
                   help="architecture (model YAML) of a bare state dict without its NAME.json (torchaudio) or NAME.yaml (fairseq2)")
    force_arg(p)
    p.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from cssl.convert import detect, output_paths, read_checkpoint, write_checkpoint
    from cssl.convert.payload import has_heads
    from cssl.model import ModelConfig
    from cssl.utils.config import load_config
    from cssl.utils.io import check_outputs

    check_outputs(output_paths(args.dst, args.to), [args.src, args.model], force=args.force)
    config = load_config(ModelConfig, args.model) if args.model else None
    ckpt = read_checkpoint(args.src, config)
    kind = ("fine-tuned (CTC head, " + f"{len(ckpt['vocab']['symbols'])} symbols)" if ckpt["kind"] == "finetune"
            else "pretrained" + (" (quantizer included)" if has_heads(ckpt) else " (towers only)"))
    verify(ckpt, str(args.src))  # what is written must load: refuse it here, naming the difference
    written = write_checkpoint(ckpt, args.dst, args.to)
    print(f"{args.src} ({detect(args.src)}, {kind}) -> {args.to}: {', '.join(str(p) for p in written)}")
    return 0


def verify(ckpt: dict, name: str) -> None:
    """Loads the checkpoint into the model its config describes (towers, CTC head, and quantizer and
    projections when it has them); raises the loader's error, with its hint, when they disagree."""
    from cssl.convert.loading import load_model, load_pretrainer
    from cssl.convert.payload import has_heads

    if ckpt.get("kind") == "pretrain" and has_heads(ckpt):
        load_pretrainer(ckpt, name)
    else:
        load_model(ckpt, name=name)
