"""Which utterances to label: ``cssl select``'s covering choice (``--method cover``) and its unit-coverage
choice (``--method units``) against random labels of the same minutes.

    python benchmarks/label_selection.py [--data ../shared/data] [--demo runs/demo/corpus]
                                         [--out runs/label-selection] [--budgets 10,30] [--seeds 3]
                                         [--methods cover,units,random] [--max-steps 1500] [--threads 1]
    python benchmarks/label_selection.py --out runs/label-selection --report

For each corpus, budget, method and seed: ``cssl select`` picks the labels from the training pool (``--seed``
seeds each choice and the random one), the pretrained checkpoint is fine-tuned on them until
dev early stopping, and the test speakers are scored greedily and with the corpus's word 3-gram LM (weights
tuned on dev per model). Corpora:

- ``ls``: Mini LibriSpeech (``--data``/librispeech-mini; skipped when absent), the split of
  ``benchmarks/librispeech.py`` (pool: the 20 train speakers' 1,020 utterances; 4 dev and 4 test speakers),
  the shipped real-speech checkpoint (embeddings and start), ``configs/finetune/tiny-read.yaml``.
- ``demo``: a synthetic corpus folder (``--demo``: ``train``, ``dev``, ``test`` manifests as ``cssl data synth``
  writes them) whose labeled ``train`` pool holds at least twice the largest budget (the demo's own corpus
  holds 11 minutes: synthesise a larger one), the shipped synthetic checkpoint, ``configs/finetune/tiny.yaml``.

Prints and writes (``--out``: ``table.md``, ``results.json``, ``label_selection.png``) the mean and spread
over seeds of test WER and CER per corpus, budget and method, and the change of each choice against
random. Finished runs (``result.json``) are reused; an interrupted one continues from its newest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import librispeech  # noqa: E402
import real_corpora  # noqa: E402
from label_budget import plot_groups  # noqa: E402

from cssl import PRETRAINED, REAL_PRETRAINED  # noqa: E402
from cssl.cli.options import seed_list  # noqa: E402
from cssl.experiments.label_budget import FIGURES, mean_cell, mean_spread  # noqa: E402
from cssl.experiments.steps import FINETUNE_PRESET, build_lm  # noqa: E402

METHODS = ("cover", "units", "random")


def corpora(args) -> dict[str, dict]:
    """Each corpus's manifests, LM, checkpoint and preset (written into ``--out``/NAME when needed)."""
    found = {}
    if "ls" in real_corpora.available(args.data):
        paths = librispeech.prepare(args.data, args.out / "ls", [], seed=0)
        found["ls"] = {"paths": paths, "pool": paths["train"], "ckpt": REAL_PRETRAINED, "config": librispeech.PRESET}
    if args.demo is not None:
        folder = args.demo
        paths = {name: folder / f"{name}.jsonl" for name in ("train", "dev", "test")}
        paths["dev-small"] = paths["dev"]
        paths["lm"] = args.out / "demo" / "lm.arpa"
        if not paths["lm"].exists():
            paths["lm"].parent.mkdir(parents=True, exist_ok=True)
            build_lm(folder, paths["lm"])
        found["demo"] = {"paths": paths, "pool": paths["train"], "ckpt": PRETRAINED, "config": FINETUNE_PRESET}
    return found


def check_pool(name: str, pool: Path, budgets: list[float]) -> None:
    """Refuses a pool too small for a choice to matter: at least twice the largest budget."""
    from cssl.data.manifest import read_manifest

    minutes = read_manifest(pool).hours * 60
    if minutes < 2 * max(budgets):
        raise SystemExit(f"{name}: the pool {pool} holds {minutes:.1f} min of labeled audio; budgets up to "
                         f"{max(budgets):g} min need at least {2 * max(budgets):g} (any selection would take most of it)")


def select(pool: Path, out: Path, minutes: float, method: str, seed: int, ckpt: Path, threads: int | None) -> Path:
    """``cssl select`` as a user runs it (reused when its manifest exists)."""
    if not out.exists():
        command = [sys.executable, "-m", "cssl", "select", str(pool), str(out), "--minutes", f"{minutes:g}",
                   "--method", method, "--seed", str(seed), "--ckpt", str(ckpt), "--force",
                   *(["--threads", str(threads)] if threads else [])]
        subprocess.run(command, check=True)
    return out


def table(rows: list[dict]) -> str:
    groups = plot_ready(rows)
    lines = ["| corpus | labels | method | seeds | updates (best at) | WER greedy | CER greedy | WER + LM | CER + LM |",
             "|---|---:|---|---:|---|---:|---:|---:|---:|"]
    for (corpus, minutes, method), runs in groups.items():
        cells = [mean_cell(runs, d, m) for d, m in FIGURES]
        updates = ", ".join(f"{r['steps']} ({r['best_step']})" for r in runs)
        lines.append(f"| {corpus} | {minutes:g} min | {method} | {len(runs)} | {updates} | {' | '.join(cells)} |")
    changes = []
    for (corpus, minutes, method), runs in groups.items():
        base = groups.get((corpus, minutes, "random"))
        if method != "random" and base:
            gains = [mean_spread(runs, d, m)[0] / mean_spread(base, d, m)[0] - 1
                     for d, m in FIGURES]
            changes.append(f"| {corpus} | {minutes:g} min | {method} | " + " | ".join(f"{g:+.1%}" for g in gains) + " |")
    if changes:
        lines += ["", "| corpus | labels | method vs random (means) | WER greedy | CER greedy | WER + LM | CER + LM |",
                  "|---|---:|---|---:|---:|---:|---:|", *changes]
    return "\n".join(lines)


def plot_ready(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["corpus"], r["minutes"], r["arm"] != "random", r["seed"])):
        groups.setdefault((r["corpus"], r["minutes"], r["arm"]), []).append(r)
    return groups


def write(out: Path, rows: list[dict]) -> None:
    text = table(rows)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (out / "table.md").write_text(text + "\n", encoding="utf-8")
    labelled = {(minutes, f"{corpus} {method}"): runs for (corpus, minutes, method), runs in plot_ready(rows).items()}
    plot_groups(labelled, out / "label_selection.png", "Label selection, test speakers: {metric}", top=1.1)
    print(f"# Label selection: each choice against random\n\n{text}\n\nplot: {out / 'label_selection.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--demo", type=Path, default=None, help="a demo corpus folder (train/dev/test manifests)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "label-selection")
    parser.add_argument("--budgets", default="10,30", help="minutes of labels, comma separated")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=seed_list, default=seed_list("3"),
                        help="seeds: a count N (seeds 1..N) or a comma list (2,3)")
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--patience", type=int, default=8, help="validations (every 100 updates) without a better dev CER")
    parser.add_argument("--min-steps", type=int, default=1000, help="no early stop before this many updates")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report", action="store_true", help="table the finished runs under --out; train nothing")
    args = parser.parse_args(argv)
    args.set, args.tag = [], ""
    if args.report:
        return librispeech.report(args.out, "*/*min/*-seed*/result.json", write)
    found = corpora(args)
    if not found:
        print(f"{args.data}: no librispeech-mini, and no --demo corpus; nothing to do")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    budgets = [float(b) for b in args.budgets.split(",")]
    for name, corpus in found.items():
        check_pool(name, corpus["pool"], budgets)
    rows = []
    for name, corpus in found.items():
        for minutes in budgets:
            for seed in args.seeds:
                for method in args.methods.split(","):
                    folder = args.out / name / f"{minutes:g}min"
                    folder.mkdir(parents=True, exist_ok=True)
                    labels = select(corpus["pool"], folder / f"labels-{method}-seed{seed}.jsonl", minutes, method,
                                    seed, corpus["ckpt"], args.threads)
                    row = librispeech.run_arm(args, corpus["paths"], minutes, method, corpus["ckpt"], seed,
                                              labels=labels, run=folder / f"{method}-seed{seed}",
                                              config=corpus["config"], fields={"corpus": name})
                    rows.append(row)
    write(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
