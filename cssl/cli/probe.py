"""``cssl probe CKPT MANIFEST``: phone purity, cluster purity and PNMI of every level of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cssl.cli.options import set_threads, threads_arg


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``probe`` command."""
    p = groups.add_parser(
        "probe", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="how phonetic each level of a model is (k-means units against phone alignments)",
        description="k-means (faiss) on the frames of every level of a model (local tower, each Transformer "
                    "layer; the quantizer's codes as they are), scored against the phone alignments beside the "
                    "manifest (NAME.phones.jsonl, which cssl data synth writes): phone purity, cluster purity, "
                    "PNMI. Prints a table and writes a PNG.")
    p.add_argument("checkpoint", type=Path, help="pretraining or fine-tuning checkpoint, or release")
    p.add_argument("manifest", type=Path, help="manifest of the utterances to probe")
    p.add_argument("--alignments", type=Path, default=None, help="phone alignments (default: NAME.phones.jsonl beside the manifest)")
    p.add_argument("--clusters", type=int, default=100, help="k of the k-means per level")
    p.add_argument("--utterances", type=int, default=300, help="probe the first N aligned utterances")
    p.add_argument("--seed", type=int, default=0, help="k-means seed")
    p.add_argument("--plot", type=Path, default=None, help="PNG to write (default: CKPT's name + .probe.png beside it)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    threads_arg(p)
    p.set_defaults(func=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    import dataclasses

    from cssl.convert import read_checkpoint
    from cssl.convert.loading import load_model, load_pretrainer
    from cssl.convert.payload import has_heads, normalize_of
    from cssl.probe import Probe, plot_probe
    from cssl.utils.progress import ProgressLine

    set_threads(args)
    ckpt = read_checkpoint(args.checkpoint)
    if has_heads(ckpt):
        pretrainer, _ = load_pretrainer(ckpt, str(args.checkpoint))
        model, quantizer = pretrainer.model, pretrainer.quantizer
        normalize = normalize_of(ckpt)
    else:
        loaded = load_model(ckpt, name=str(args.checkpoint))
        model, quantizer, normalize = loaded.model, None, loaded.normalize
    probe = Probe.from_manifest(args.manifest, args.alignments, args.utterances, normalize)

    meter = ProgressLine("probe: features", len(probe.waves))
    result = probe.run(model, quantizer, args.clusters, args.seed, lambda done, total: meter.update(done))
    meter.close()
    print(result.table())
    print(result.summary())
    if result.skipped:
        print(f"skipped {len(result.skipped)} utterances (first: {next(iter(result.skipped.items()))})")
    png = args.plot or args.checkpoint.with_name(args.checkpoint.name + ".probe.png")
    plot_probe(result, png, title=f"phonetic probe of {args.checkpoint.name} on {args.manifest.name}")
    print(f"plot: {png}")
    if args.json:
        record = {"checkpoint": str(args.checkpoint), "manifest": str(args.manifest), "step": ckpt.get("step"),
                  **{k: v for k, v in dataclasses.asdict(result).items() if k != "skipped"}}
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0
