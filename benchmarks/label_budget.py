"""Label budget: test WER after fine-tuning on 1, 10, 30 and 60 minutes of labels, pretrained vs scratch.

    python benchmarks/label_budget.py [--out runs/label-budget] [--budgets 1,10,30,60]

The shape of the wav2vec 2.0 paper's low-resource table, on synthetic speech:

- labeled pool: the train split (15%) of a second synthetic corpus (``--pool-hours``, seed 2;
  seen voice variants only; 7 h give 63 minutes of labels, synthesized in about 1.5 minutes).
  Budgets are nested random subsets of it (the 1-minute set is inside the 10-minute set,
  and so on), drawn by duration with ``--seed``;
- dev and test: the demo corpus's (``python -m cssl.demo``; synthesized here if missing), so
  the test voices are heard in no labeled subset and by no pretraining;
- models: the shipped pretrained checkpoint (or ``--pretrained``), local tower frozen, and
  the same-size model from scratch, everything trained; the demo's fine-tuning recipe with
  the update budget of ``--steps`` (one value per budget), early stopping on dev WER;
- scoring: greedy and beam search + the demo's 3-gram LM (transcripts of the demo
  corpus's train split, LM weight and word score chosen on dev) on the test split.

Prints a markdown table (WER and CER per budget and model, relative WER reduction) and
writes it with ``label_budget.png`` and ``results.json`` into ``--out``. Runs finished
earlier (their ``result.json``) are reused, so an interrupted run resumes.
On 2 CPU cores the default budgets take about 45 minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from cssl.data.manifest import Manifest, read_manifest, write_manifest
from cssl.experiments import PRETRAINED, build_lm, finetune, score, synthesize

ROOT = Path(__file__).resolve().parents[1]

MODELS = ("pretrained", "scratch")


def nested_subsets(pool: Manifest, minutes: list[float], seed: int) -> dict[float, Manifest]:
    """For each budget, the shortest prefix of one seeded shuffle of ``pool`` holding that much audio."""
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    total = sum(pool[i].duration for i in order) / 60
    subsets = {}
    for budget in minutes:
        if budget > total:
            raise ValueError(f"--budgets: {budget:g} min asked, the labeled pool holds {total:.1f} min; "
                             f"raise --pool-hours")
        taken, seconds = [], 0.0
        for i in order:
            if seconds >= budget * 60:
                break
            taken.append(i)
            seconds += pool[i].duration
        subsets[budget] = pool.subset(sorted(taken))
    return subsets


def labeled_pool(corpus: Path) -> Manifest:
    """The labeled train split of a synthetic corpus."""
    pool = read_manifest(corpus / "train.tsv")
    if not pool.labeled:
        raise ValueError(f"{corpus / 'train.tsv'}: the pool needs transcripts (train.wrd)")
    return pool


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("wer", "cer")):
        for model in MODELS:
            for decoder, style in (("greedy", "o-"), ("lm", "s--")):
                pts = [(r["minutes"], r[decoder][metric]) for r in rows if r["model"] == model]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{model}, {decoder}")
        ax.set(xscale="log", xlabel="minutes of labels", ylabel=f"test {metric.upper()}",
               title=f"Test {metric.upper()} (unseen voices)", ylim=(0, 1.05))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    lines = ["| labels | updates | model | WER greedy | CER greedy | WER + LM | CER + LM |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    by = {(r["minutes"], r["model"]): r for r in rows}
    for r in rows:
        lines.append(f"| {r['minutes']:g} min | {r['steps']} | {r['model']} | {r['greedy']['wer']:.3f} "
                     f"| {r['greedy']['cer']:.3f} | {r['lm']['wer']:.3f} | {r['lm']['cer']:.3f} |")
    lines += ["", "| labels | relative WER reduction, greedy | relative WER reduction, + LM |", "|---:|---:|---:|"]
    for minutes in sorted({r["minutes"] for r in rows}):
        pre, scratch = by.get((minutes, "pretrained")), by.get((minutes, "scratch"))
        if pre and scratch:
            gains = [1 - pre[d]["wer"] / scratch[d]["wer"] if scratch[d]["wer"] else float("nan")
                     for d in ("greedy", "lm")]
            lines.append(f"| {minutes:g} min | {gains[0]:.1%} | {gains[1]:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "label-budget")
    parser.add_argument("--demo-corpus", type=Path, default=ROOT / "runs" / "demo" / "corpus",
                        help="dev and test splits (the demo's corpus; synthesized if missing)")
    parser.add_argument("--pool-hours", type=float, default=7.0,
                        help="size of the corpus whose train split holds the labels")
    parser.add_argument("--budgets", default="1,10,30,60", help="minutes of labels, comma separated")
    parser.add_argument("--steps", default="400,600,1000,1500", help="updates per budget, comma separated")
    parser.add_argument("--pretrained", type=Path, default=PRETRAINED)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    if len(steps) != len(budgets):
        parser.error(f"--steps: {len(steps)} values for {len(budgets)} budgets")
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    synthesize(args.demo_corpus, hours=1.0, seed=0)  # the demo's corpus (reused when there)
    pool_dir = args.out / "pool"
    synthesize(pool_dir, hours=args.pool_hours, seed=2)
    subsets = nested_subsets(labeled_pool(pool_dir), budgets, args.seed)
    lm = args.out / "lm.arpa"
    if not lm.exists():
        build_lm(args.demo_corpus, lm)
    rows = []
    for (minutes, subset), n_steps in zip(subsets.items(), steps):
        train = args.out / f"labels-{minutes:g}min.tsv"
        write_manifest(subset, train)
        for model in MODELS:
            run = args.out / f"{minutes:g}min-{model}"
            done = run / "result.json"
            if done.exists():
                rows.append(json.loads(done.read_text()))
                continue
            print(f"== {minutes:g} min of labels ({len(subset)} utterances), {model}, {n_steps} updates", flush=True)
            best = finetune(model, train, args.demo_corpus / "dev.tsv", run, n_steps, args.pretrained)
            greedy, with_lm, tuning = score(best, args.demo_corpus, lm, run / "test", model)
            row = {"minutes": minutes, "utterances": len(subset), "model": model, "steps": n_steps,
                   "greedy": {"wer": greedy.wer, "cer": greedy.cer}, "lm": {"wer": with_lm.wer, "cer": with_lm.cer},
                   "lm_weight": tuning.lm_weight, "word_score": tuning.word_score}
            done.write_text(json.dumps(row), encoding="utf-8")
            rows.append(row)
    text = table(rows)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    plot(rows, args.out / "label_budget.png")
    print(f"# Label budget: test split of the demo corpus (unseen voices)\n\n{text}\n")
    print(f"plot: {args.out / 'label_budget.png'}; wall time {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
