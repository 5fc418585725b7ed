"""Label budget: test WER after fine-tuning on 1 and 10 minutes of labels, pretrained vs scratch,
each fine-tuned until dev early stopping ends it, over several seeds.

    python benchmarks/label_budget.py [--out runs/label-budget] [--budgets 1,10] [--seeds 3]

The shape of the wav2vec 2.0 paper's low-resource table, on synthetic speech:

- labeled pool: the train split (15%) of a second synthetic corpus (``--pool-hours``, seed 2;
  7 h give 63 minutes of labels, synthesized in about 1.5 minutes). Its speakers are none of
  the pretraining corpus's (checked when ``--pretraining-corpus`` is there). Budgets are
  nested random subsets of it (the 1-minute set is inside the 10-minute set), drawn by
  duration with ``--seed``;
- dev and test: the demo corpus's (``python -m cssl.demo``; synthesized here if missing), so
  the test voices are heard in no labeled subset and by no pretraining;
- models: the shipped pretrained checkpoint (or ``--pretrained``), local tower frozen, and
  the same-size model from scratch, everything trained; the demo's fine-tuning recipe run
  until early stopping on dev WER ends it (``--patience`` validations without a better dev
  WER, every 50 updates, none before ``--min-steps``: scratch models can sit at the all-blank
  plateau that long) or ``--max-steps``, whichever comes first, once per ``--seeds``
  training seed (initial weights, batches, masks);
- ``--set KEY=VALUE`` (with ``--tag NAME``): a fine-tuning override of every run, e.g. the local
  tower trained too (``freeze.feature_encoder=false``); the tag names the runs' folders, so the
  preset's runs are neither reused nor overwritten;
- scoring: greedy and beam search + the demo's 3-gram LM (transcripts of the demo
  corpus's train split, LM weight and word score chosen on dev per model) on the test split.

Prints a markdown table (mean and spread over the seeds of WER and CER per budget and model,
relative reductions of the means, and the label-efficiency line: pretrained at the smallest
budget against scratch at the largest) and writes it with ``label_budget.png`` and
``results.json`` into ``--out`` (``--publish``: also into ``cssl/assets/label_budget.json``, which
the demo's report quotes). Runs finished earlier (their ``result.json``) are reused, so
an interrupted run resumes, and the scratch runs, which do not depend on the checkpoint, are
kept when only ``--pretrained`` changes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from cssl.data.manifest import Manifest, read_manifest, write_manifest
from cssl.config import load_config
from cssl.experiments import FINETUNE_PRESET, PRETRAINED, build_lm, finetune, score, synthesize
from cssl.train.nbest import dev_rank
from finetune.config import FinetuneConfig
from cssl.label_budget import (FIGURES, MODELS, SHIPPED, checkpoint_tag, efficiency_line, group, mean_cell,
                               mean_spread, reductions, run_name)

ROOT = Path(__file__).resolve().parents[1]

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

    groups = group(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("wer", "cer")):
        for model in MODELS:
            for decoder, style in (("greedy", "o-"), ("lm", "s--")):
                keys = [k for k in groups if k[1] == model]
                stats = [mean_spread(groups[k], decoder, metric) for k in keys]
                ax.errorbar([k[0] for k in keys], [m for m, _ in stats], yerr=[sd for _, sd in stats], fmt=style,
                            capsize=3, label=f"{model}, {decoder}")
        ax.set(xscale="log", xlabel="minutes of labels", ylabel=f"test {metric.upper()} (mean, std over seeds)",
               title=f"Test {metric.upper()} (unseen voices)", ylim=(0, 1.05))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    groups = group(rows)
    lines = ["| labels | model | seeds | updates (best at) | WER greedy | CER greedy | WER + LM | CER + LM |",
             "|---:|---|---:|---|---:|---:|---:|---:|"]
    for (minutes, model), runs in groups.items():
        cells = [mean_cell(runs, decoder, metric) for decoder, metric in FIGURES]
        updates = ", ".join(f"{r['steps']} ({r.get('best_step', '?')})" for r in runs)
        lines.append(f"| {minutes:g} min | {model} | {len(runs)} | {updates} | {' | '.join(cells)} |")
    lines += ["", "| labels | relative reduction, pretrained vs scratch: WER greedy | CER greedy | WER + LM | "
              "CER + LM |", "|---:|---:|---:|---:|---:|"]
    for minutes, gains in reductions(rows).items():
        lines.append(f"| {minutes:g} min | " + " | ".join(f"{g:.1%}" for g in gains) + " |")
    line = efficiency_line(rows)
    if line:
        lines += ["", line]
    return "\n".join(lines)


def speakers_of(corpus: Path) -> set[str]:
    """Speaker ids of every split of a synthetic corpus (from its corpus.json)."""
    return set(json.loads((corpus / "corpus.json").read_text())["speakers"])


def best_step(run: Path, metric: str = "wer") -> int | None:
    """The update of the best dev validation (the checkpoint kept) by ``metric`` (``early_stop.metric``: WER or
    CER first, the other second), from ``metrics.jsonl``."""
    valid = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in line]
    return min(valid, key=lambda r: (*dev_rank(r["wer"], r["cer"], metric), r["step"]))["step"] if valid else None


def last_step(run: Path) -> int:
    """The last update trained."""
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return max(steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "label-budget")
    parser.add_argument("--demo-corpus", type=Path, default=ROOT / "runs" / "demo" / "corpus",
                        help="dev and test splits (the demo's corpus; synthesized if missing)")
    parser.add_argument("--pool-hours", type=float, default=7.0,
                        help="size of the corpus whose train split holds the labels")
    parser.add_argument("--pretraining-corpus", type=Path, default=ROOT / "runs" / "corpus-30h",
                        help="the pretraining corpus, to check that no labeled speaker was heard in pretraining")
    parser.add_argument("--budgets", default="1,10", help="minutes of labels, comma separated")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per budget and model")
    parser.add_argument("--max-steps", type=int, default=4000, help="most updates of a run")
    parser.add_argument("--patience", type=int, default=8, help="validations (every 50 updates) without a better dev WER")
    parser.add_argument("--min-steps", type=int, default=600, help="no early stop before this many updates")
    parser.add_argument("--models", default=",".join(MODELS), help="arms to run, comma separated")
    parser.add_argument("--pretrained", type=Path, default=PRETRAINED)
    parser.add_argument("--seed", type=int, default=0, help="seed of the labeled subsets")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of training and scoring "
                        "(default: torch's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a fine-tuning override of every run (e.g. freeze.feature_encoder=false); needs --tag")
    parser.add_argument("--tag", default="", help="names the runs made with --set (their folders)")
    parser.add_argument("--publish", action="store_true",
                        help=f"also write the rows to {SHIPPED.relative_to(ROOT)} (the demo quotes them)")
    args = parser.parse_args(argv)
    if bool(args.set) != bool(args.tag):
        parser.error("--set and --tag go together: the tag names the runs the overrides make")
    budgets = [float(b) for b in args.budgets.split(",")]
    models = [m for m in args.models.split(",") if m]
    if not set(models) <= set(MODELS):
        parser.error(f"--models: choose among {', '.join(MODELS)}")
    metric = load_config(FinetuneConfig, FINETUNE_PRESET, args.set).early_stop.metric  # ranks the validations
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    synthesize(args.demo_corpus, hours=1.0, seed=0)  # the demo's corpus (reused when there)
    pool_dir = args.out / "pool"
    synthesize(pool_dir, hours=args.pool_hours, seed=2)
    if (args.pretraining_corpus / "corpus.json").is_file():
        shared = speakers_of(pool_dir) & speakers_of(args.pretraining_corpus)
        if shared:
            raise SystemExit(f"labeled pool and pretraining corpus share speakers: {sorted(shared)[:5]}")
        print(f"no speaker of the labeled pool is in {args.pretraining_corpus}", flush=True)
    subsets = nested_subsets(labeled_pool(pool_dir), budgets, args.seed)
    lm = args.out / "lm.arpa"
    if not lm.exists():
        build_lm(args.demo_corpus, lm)
    tag = checkpoint_tag(args.pretrained)  # a new checkpoint, new runs
    rows = []
    for minutes, subset in subsets.items():
        train = args.out / f"labels-{minutes:g}min.tsv"
        write_manifest(subset, train)
        for model in models:
            for seed in range(1, args.seeds + 1):
                run = args.out / run_name(minutes, model, seed, tag, args.tag)
                done = run / "result.json"
                if done.exists():
                    rows.append(json.loads(done.read_text()))
                    continue
                print(f"== {minutes:g} min of labels ({len(subset)} utterances), {model}, seed {seed}, "
                      f"until early stopping (at most {args.max_steps} updates)", flush=True)
                clock = time.monotonic()
                best = finetune(model, train, args.demo_corpus / "dev.tsv", run, args.max_steps, args.pretrained,
                                [f"seed={seed}", f"early_stop.patience={args.patience}",
                                 f"early_stop.min_steps={args.min_steps}", "save_every=100000",
                                 *([f"threads={args.threads}"] if args.threads else []), *args.set])
                minutes_trained = (time.monotonic() - clock) / 60
                greedy, with_lm, tuning = score(best, args.demo_corpus, lm, run / "test", model)
                row = {"minutes": minutes, "utterances": len(subset), "model": model, "seed": seed,
                       "steps": last_step(run), "best_step": best_step(run, metric), "train_minutes": round(minutes_trained, 1),
                       "pretrained": str(args.pretrained) if model == "pretrained" else None,
                       "greedy": {"wer": greedy.wer, "cer": greedy.cer}, "lm": {"wer": with_lm.wer, "cer": with_lm.cer},
                       "lm_weight": tuning.lm_weight, "word_score": tuning.word_score, "overrides": args.set}
                done.write_text(json.dumps(row), encoding="utf-8")
                rows.append(row)
    text = table(rows)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (args.out / "table.md").write_text(text + "\n", encoding="utf-8")
    if args.publish:
        SHIPPED.write_text(json.dumps({"checkpoint": tag, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    plot(rows, args.out / "label_budget.png")
    print(f"# Label budget: test split of the demo corpus (unseen voices)\n\n{text}\n")
    print(f"plot: {args.out / 'label_budget.png'}; wall time {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
