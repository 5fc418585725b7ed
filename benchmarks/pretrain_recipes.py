"""Pretraining recipes judged by the phonetic probe, at an equal number of updates.

    python benchmarks/pretrain_recipes.py [--out runs/recipes] [--steps 1500] [--only base,mask-0.5]

Each recipe is the tiny preset plus a few overrides, trained from scratch for ``--steps``
updates on the unlabeled split of a synthetic corpus (``--corpus``, by default the 30 h
corpus of ``configs/pretrain/tiny-30h.yaml``) with one thread, then probed on the first
``--probe-utterances`` utterances of that corpus's dev split (k-means with 100 units per
level, :mod:`cssl.probe`). The table gives the CPU minutes each run took (user + system
time of the training process: comparable on a shared machine, unlike wall time), the
contrastive accuracy on dev at the end, and the probe: best level, its PNMI and phone
purity. Finished runs (their ``probe.json``) are reused, so an interrupted run resumes.
Prints the markdown table and writes it with ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from cssl.experiments.steps import run_stage
from cssl.utils.config import preset

RECIPES: dict[str, list[str]] = {
    "base": [],
    "mask-0.5": ["model.mask.prob=0.5"],
    "mask-0.65-span-10": ["model.mask.prob=0.65", "model.mask.span=10"],
    "codebook-2x128": ["model.quantizer.entries=128"],
    "distractors-50": ["loss.num_distractors=50"],
    "crop-4s": ["data.crop_samples=64000"],
    "lr-2e-3": ["optim.lr=0.002"],
    "diversity-0.5": ["loss.diversity_weight=0.5"],
}
"""Name -> overrides of ``configs/pretrain/tiny.yaml``; ``base`` is the preset as it is."""


def cpu_seconds_of_children() -> float:
    """User + system CPU time of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def last_validation(metrics: Path) -> dict:
    """The last dev record of a run's ``metrics.jsonl``."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    valid = [r for r in records if r.get("split") == "valid"]
    return valid[-1] if valid else {}


def run_recipe(name: str, overrides: list[str], corpus: Path, out: Path, steps: int, probe_utterances: int) -> dict:
    """Trains one recipe (unless done) and probes it; returns its row."""
    import torch

    from cssl.convert.loading import load_pretrainer
    from cssl.probe import Probe
    from cssl.train.checkpoint import load_checkpoint

    done = out / "probe.json"
    if done.is_file():
        return json.loads(done.read_text())
    before = cpu_seconds_of_children()
    run_stage("pretrain", preset("pretrain/tiny.yaml"), [
        f"data.manifest={corpus / 'unlabeled.tsv'}",
        f"data.valid_manifest={corpus / 'dev-small.tsv'}",
        f"out_dir={out}",
        f"optim.max_steps={steps}",
        f"valid_every={steps}",
        f"save_every={steps}",
        "threads=1",
        *overrides,
    ])
    cpu = cpu_seconds_of_children() - before
    torch.set_num_threads(1)
    pretrainer, _ = load_pretrainer(load_checkpoint(out / "last.pt"), str(out / "last.pt"))
    probe = Probe.from_manifest(corpus / "dev.tsv", max_utterances=probe_utterances)
    result = probe.run(pretrainer.model, pretrainer.quantizer, clusters=100)
    best = result.best()
    valid = last_validation(out / "metrics.jsonl")
    row = {
        "recipe": name, "overrides": overrides, "steps": steps, "cpu_minutes": round(cpu / 60, 2),
        "dev_accuracy": valid.get("accuracy"), "best_level": best.level, "pnmi": round(best.scores.pnmi, 4),
        "phone_purity": round(best.scores.phone_purity, 4),
        "levels": {s.level: round(s.scores.pnmi, 4) for s in result.levels},
    }
    done.write_text(json.dumps(row, indent=1) + "\n")
    return row


def table(rows: list[dict]) -> str:
    """Markdown table of the rows."""
    lines = ["| recipe | overrides | updates | CPU min | dev accuracy | best level | PNMI | phone purity |",
             "|---|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        acc = f"{r['dev_accuracy']:.3f}" if r.get("dev_accuracy") is not None else "-"
        lines.append(f"| {r['recipe']} | {' '.join(r['overrides']) or '(preset)'} | {r['steps']} | "
                     f"{r['cpu_minutes']:.1f} | {acc} | {r['best_level']} | {r['pnmi']:.3f} | "
                     f"{r['phone_purity']:.3f} |")
    return "\n".join(lines)


def small_dev(corpus: Path, count: int = 200) -> None:
    """``dev-small.tsv``: the first ``count`` dev utterances, for quick validations."""
    from cssl.data.manifest import read_manifest, write_manifest

    dev = read_manifest(corpus / "dev.tsv")
    write_manifest(dev.subset(range(min(count, len(dev)))), corpus / "dev-small.tsv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus-30h"),
                        help="synthetic corpus with alignments (cssl data synth runs/corpus-30h --hours 30 "
                             "--seed 1 --speakers 200)")
    parser.add_argument("--steps", type=int, default=1500, help="updates per recipe")
    parser.add_argument("--probe-utterances", type=int, default=300)
    parser.add_argument("--only", default=None, help="comma-separated recipe names (default: all)")
    args = parser.parse_args(argv)
    if not (args.corpus / "unlabeled.tsv").is_file():
        print(f"{args.corpus}: no corpus; synthesize it first (see --help)", file=sys.stderr)
        return 2
    small_dev(args.corpus)
    names = args.only.split(",") if args.only else list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    rows = []
    for name in names:
        rows.append(run_recipe(name, RECIPES[name], args.corpus, args.out / name, args.steps, args.probe_utterances))
        print(table(rows), flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "table.md").write_text(table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
