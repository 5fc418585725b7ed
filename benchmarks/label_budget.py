"""Label budget: test WER after fine-tuning on 1 and 10 minutes of labels, pretrained vs scratch,
each fine-tuned until dev early stopping ends it, over several seeds.

    python benchmarks/label_budget.py [--out runs/label-budget] [--budgets 1,10] [--seeds 3]

The shape of the wav2vec 2.0 paper's low-resource table, on synthetic speech:

- labeled pool: the train split (15%) of a second synthetic corpus (``--pool-hours``, seed 2;
  7 h give 63 minutes of labels, synthesized in about 1.5 minutes). Its speakers are none of
  the pretraining corpus's (checked when ``--pretraining-corpus`` is there). Budgets are
  nested random subsets of it (the 1-minute set is inside the 10-minute set), drawn by
  duration with ``--seed``;
- dev and test: the demo corpus's (``cssl demo``; synthesized here if missing), so
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
- ``--self-train KEEP``: self-training on top of each pretrained run (:mod:`cssl.decode.pseudo_label`): it
  transcribes the pool's train split outside the labels (about an hour of audio, its transcripts
  used only to report the pseudo-labels' WER) with beam search and its dev-tuned LM, the most
  confident KEEP share joins the real labels, and the pretrained checkpoint is fine-tuned afresh
  on both (rows ``self-trained``; no early stop before ``--self-train-min-steps``). A student whose
  best dev validation does not beat its teacher's is set aside and the row gives the teacher's
  figures (its own are kept under ``student``), as a user with that dev set would;
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

from cssl.cli.options import seed_list
from cssl.data.manifest import Manifest, read_manifest, write_manifest
from cssl.experiments.label_budget import (
    FIGURES,
    MODELS,
    SELF_TRAINED,
    SHIPPED,
    arm,
    checkpoint_tag,
    efficiency_line,
    group,
    mean_cell,
    mean_spread,
    reductions,
    run_name,
)
from cssl.experiments.steps import FINETUNE_PRESET, PRETRAINED, best_checkpoint, build_lm, finetune, score, synthesize
from cssl.train.nbest import dev_rank
from cssl.utils.config import load_config
from finetune.config import FinetuneConfig

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
    plot_groups(group(rows), png, "Test {metric} (unseen voices)")


def plot_groups(groups: dict[tuple[float, str], list[dict]], png: Path, title: str, top: float = 1.05) -> None:
    """Test WER and CER (mean and spread over seeds) against minutes of labels, per arm, greedy and with the LM;
    ``title`` may name ``{metric}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("wer", "cer")):
        for model in dict.fromkeys(k[1] for k in groups):  # every arm, in table order
            for decoder, style in (("greedy", "o-"), ("lm", "s--")):
                keys = [k for k in groups if k[1] == model]
                stats = [mean_spread(groups[k], decoder, metric) for k in keys]
                ax.errorbar([k[0] for k in keys], [m for m, _ in stats], yerr=[sd for _, sd in stats], fmt=style,
                            capsize=3, label=f"{model}, {decoder}")
        ax.set(xscale="log", xlabel="minutes of labels", ylabel=f"test {metric.upper()} (mean, std over seeds)",
               title=title.format(metric=metric.upper()), ylim=(0, top))
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
    found = reductions(rows)
    if found:
        lines += ["", "| labels | relative reduction, pretrained vs scratch: WER greedy | CER greedy | WER + LM | "
                  "CER + LM |", "|---:|---:|---:|---:|---:|"]
    for minutes, gains in found.items():
        lines.append(f"| {minutes:g} min | " + " | ".join(f"{g:.1%}" for g in gains) + " |")
    arms = ["pretrained", *dict.fromkeys(arm(r) for r in sorted(rows, key=lambda r: r.get("round", 1))
                                          if r["model"] == SELF_TRAINED)]
    efficiency = [line for line in (efficiency_line(rows, a) for a in arms) if line]
    if efficiency:
        lines += ["", *efficiency]
    taught = [r for r in rows if r["model"] == SELF_TRAINED]
    if taught:
        lines += ["", "| labels | round | seed | pseudo-labels kept (min of audio) | their WER (kept / all transcribed) "
                  "| teacher test WER + LM | student test WER + LM | kept by dev |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(taught, key=lambda r: (r["minutes"], r.get("round", 1), r["seed"])):
            p = r["pseudo"]
            lines.append(f"| {r['minutes']:g} min | {r.get('round', 1)} | {r['seed']} | {p['kept']} of {p['transcribed']} "
                         f"({p['kept_minutes']:.1f}) | {p['wer_kept']:.3f} / {p['wer_all']:.3f} | "
                         f"{p['teacher_wer_lm']:.3f} | {r.get('student', r)['lm']['wer']:.3f} | "
                         f"{r.get('chosen', 'student')} |")
    return "\n".join(lines)


def speakers_of(corpus: Path) -> set[str]:
    """Speaker ids of every split of a synthetic corpus (from its corpus.json)."""
    return set(json.loads((corpus / "corpus.json").read_text())["speakers"])


def best_validation(run: Path, metric: str = "wer") -> dict | None:
    """The record of the best dev validation (the checkpoint kept) by ``metric`` (``early_stop.metric``: WER or
    CER first, the other second), from ``metrics.jsonl``."""
    valid = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in line]
    return min(valid, key=lambda r: (*dev_rank(r["wer"], r["cer"], metric), r["step"])) if valid else None


def best_step(run: Path, metric: str = "wer") -> int | None:
    """The update of the best dev validation (see :func:`best_validation`)."""
    best = best_validation(run, metric)
    return best["step"] if best else None


def dev_gate(row: dict, teacher_row: dict, run: Path, teacher_run: Path, metric: str) -> dict:
    """A self-trained row as a user with a dev set would take it: the student's figures when its best dev
    validation beats its teacher's, else the teacher's (the student's own under ``student``)."""
    student, teacher = best_validation(run, metric), best_validation(teacher_run, metric)
    if student and teacher and dev_rank(student["wer"], student["cer"], metric) < dev_rank(
            teacher["wer"], teacher["cer"], metric):
        return {**row, "chosen": "student"}
    return {**row, "chosen": "teacher", "student": {"greedy": row["greedy"], "lm": row["lm"]},
            **{k: teacher_row[k] for k in ("greedy", "lm", "lm_weight", "word_score")}}


def last_step(run: Path) -> int:
    """The last update trained."""
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return max(steps)


def trained(args, run: Path, model: str, train: Path, minutes: float, utterances: int, seed: int, metric: str,
            lm: Path, min_steps: int | None = None, **extra) -> dict:
    """Fine-tunes ``model`` on ``train`` into ``run`` until early stopping (none before ``min_steps``, default
    ``--min-steps``) and scores it on test, or reads the row of a run finished earlier; ``extra`` goes into a
    new row."""
    done = run / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    print(f"== {minutes:g} min of labels ({utterances} utterances), {run.name}, until early stopping "
          f"(at most {args.max_steps} updates)", flush=True)
    clock = time.monotonic()
    overrides = [f"seed={seed}", f"early_stop.patience={args.patience}",
                 f"early_stop.min_steps={min_steps or args.min_steps}", "save_every=100000",
                 *([f"threads={args.threads}"] if args.threads else []), *args.set]
    best = finetune("scratch" if model == "scratch" else "pretrained", train, args.demo_corpus / "dev.tsv", run,
                    args.max_steps, args.pretrained, overrides)
    minutes_trained = (time.monotonic() - clock) / 60
    greedy, with_lm, tuning = score(best, args.demo_corpus / "dev.tsv", args.demo_corpus / "test.tsv", lm, run / "test", model)
    row = {"minutes": minutes, "utterances": utterances, "model": model, "seed": seed,
           "steps": last_step(run), "best_step": best_step(run, metric), "train_minutes": round(minutes_trained, 1),
           "pretrained": str(args.pretrained) if model != "scratch" else None,
           "greedy": {"wer": greedy.wer, "cer": greedy.cer}, "lm": {"wer": with_lm.wer, "cer": with_lm.cer},
           "lm_weight": tuning.lm_weight, "word_score": tuning.word_score, "overrides": args.set, **extra}
    done.write_text(json.dumps(row), encoding="utf-8")
    return row


def unlabeled_audio(pool: Manifest, labeled: Manifest, minutes: float | None) -> Manifest:
    """The pool's utterances outside the labeled subset (their transcripts kept only to measure the
    pseudo-labels), at most ``minutes`` of them in pool order."""
    taken = {e.path for e in labeled}
    rest, seconds = [], 0.0
    for e in pool:
        if e.path in taken:
            continue
        if minutes is not None and seconds + e.duration > minutes * 60:
            break
        rest.append(e)
        seconds += e.duration
    return Manifest(pool.root, rest)


def self_trained(args, minutes: float, subset: Manifest, unlabeled: Manifest, seed: int, tag: str, metric: str,
                 lm: Path, rounds: int = 1) -> dict:
    """Self-training: the pretrained run of this budget and seed (from the second round on, the previous
    round's self-trained run) transcribes ``unlabeled`` with beam search and its dev-tuned LM; the most
    confident ``--self-train`` share joins the labels, and the pretrained checkpoint is fine-tuned afresh
    on both (same recipe and seed)."""
    from cssl.decode.pseudo_label import pseudo_label
    from cssl.decode.recognizer import Recognizer

    def variant(k: int) -> str:
        return "-".join(part for part in (args.tag, f"keep{args.self_train:g}", f"round{k}" if k > 1 else "") if part)

    run = args.out / run_name(minutes, SELF_TRAINED, seed, tag, variant(rounds))
    teacher_run = args.out / (run_name(minutes, "pretrained", seed, tag, args.tag) if rounds == 1
                              else run_name(minutes, SELF_TRAINED, seed, tag, variant(rounds - 1)))
    teacher_row = json.loads((teacher_run / "result.json").read_text())
    if (run / "result.json").exists():
        return dev_gate(json.loads((run / "result.json").read_text()), teacher_row, run, teacher_run, metric)
    teacher = best_checkpoint(teacher_run)
    print(f"== pseudo-labels, round {rounds}: {teacher} transcribes {len(unlabeled)} utterances "
          f"({unlabeled.hours * 60:.1f} min) with LM weight {teacher_row['lm_weight']:g}, word score "
          f"{teacher_row['word_score']:g}", flush=True)
    rec = Recognizer.from_checkpoint(teacher, lm=str(lm), lm_weight=teacher_row["lm_weight"],
                                     word_score=teacher_row["word_score"])
    labels = pseudo_label(rec, unlabeled, keep=args.self_train)
    kept, every = labels.error_rates(kept_only=True), labels.error_rates(kept_only=False)
    pseudo = {"transcribed": len(labels.labels), "kept": sum(labels.kept), "kept_minutes": labels.kept_seconds / 60,
              "wer_kept": kept.wer if kept else float("nan"), "wer_all": every.wer if every else float("nan"),
              "teacher_wer_lm": teacher_row["lm"]["wer"], "keep": args.self_train}
    print(f"kept {pseudo['kept']} of {pseudo['transcribed']} ({pseudo['kept_minutes']:.1f} min); their WER "
          f"{pseudo['wer_kept']:.3f} (all transcribed: {pseudo['wer_all']:.3f})", flush=True)
    manifest = args.out / f"{run.name}.jsonl"
    write_manifest(labels.manifest(subset), manifest)
    row = trained(args, run, SELF_TRAINED, manifest, minutes, len(subset), seed, metric, lm,
                  max(args.min_steps, args.self_train_min_steps), pseudo=pseudo, round=rounds)
    return dev_gate(row, teacher_row, run, teacher_run, metric)


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
    parser.add_argument("--seeds", type=seed_list, default=seed_list("3"),
                        help="training seeds per budget and model: a count N (seeds 1..N) or a comma list (2,3)")
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
    parser.add_argument("--self-train", type=float, default=0.0, metavar="KEEP",
                        help="also self-train each pretrained run: it transcribes the pool's audio outside the labels "
                             "(beam + its tuned LM), the most confident KEEP share (0-1] joins the labels and the "
                             "pretrained checkpoint is fine-tuned again on both (rows 'self-trained')")
    parser.add_argument("--self-train-rounds", type=int, default=1,
                        help="rounds of self-training: each round's model makes the next round's pseudo-labels")
    parser.add_argument("--self-train-min-steps", type=int, default=1500,
                        help="no early stop of a self-trained run before this many updates: it learns from 30 times "
                             "the audio, and left the head-only warm-up's dev CER behind only after 600 updates")
    parser.add_argument("--unlabeled-minutes", type=float, default=None,
                        help="at most this much of the pool's unlabeled audio for --self-train (default: all of its "
                             "train split outside the labels)")
    parser.add_argument("--publish", action="store_true",
                        help=f"also write the rows to {SHIPPED.relative_to(ROOT)} (the demo quotes them)")
    args = parser.parse_args(argv)
    if bool(args.set) != bool(args.tag):
        parser.error("--set and --tag go together: the tag names the runs the overrides make")
    budgets = [float(b) for b in args.budgets.split(",")]
    models = [m for m in args.models.split(",") if m]
    if not set(models) <= set(MODELS):
        parser.error(f"--models: choose among {', '.join(MODELS)}")
    if not 0 <= args.self_train <= 1:
        parser.error("--self-train is the share of pseudo-labels kept, in (0, 1]")
    if args.self_train and "pretrained" not in models:
        parser.error("--self-train needs the pretrained arm (--models pretrained): its runs make the pseudo-labels")
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
            for seed in args.seeds:
                run = args.out / run_name(minutes, model, seed, tag, args.tag)
                rows.append(trained(args, run, model, train, minutes, len(subset), seed, metric, lm))
        if args.self_train and "pretrained" in models:
            unlabeled = unlabeled_audio(labeled_pool(pool_dir), subset, args.unlabeled_minutes)
            for rounds in range(1, args.self_train_rounds + 1):
                for seed in args.seeds:
                    rows.append(self_trained(args, minutes, subset, unlabeled, seed, tag, metric, lm, rounds))
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
