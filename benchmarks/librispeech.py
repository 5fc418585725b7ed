"""Open-vocabulary real speech: Mini LibriSpeech test speakers after fine-tuning on 10 minutes or 1 hour
of labels, from scratch, from the synthetic-speech checkpoint and from a real-speech one.

    python benchmarks/librispeech.py [--data ../shared/data] [--out runs/librispeech] [--budgets 10,60]
                                     [--arms scratch,scratch-frozen,synthetic,real] [--real CKPT] [--init NAME=CKPT ...]
                                     [--seeds 3] [--max-steps 3000] [--set KEY=VALUE --tag NAME] [--threads 1]
    python benchmarks/librispeech.py --out runs/librispeech --report

Runs only where the development recordings are (``--data``: ``librispeech-mini/``); otherwise it says so
and exits 0.

- Split (``benchmarks/real_corpora.py``, fixed seed): 4 test speakers (2 F, 2 M, 283 utterances, 59 min),
  4 dev speakers, 20 train speakers (1,020 utterances, 3.6 h). No pretraining run may have heard a test
  speaker: a pretrained arm whose checkpoint records them (its ``speakers``, or its training manifest when
  that is still on disk) is refused with the speakers named.
- Labels: nested random subsets of the train speakers' utterances (the 10-minute set is inside the 1-hour
  set), drawn by duration with ``--seed``.
- Arms, each fine-tuned with ``configs/finetune/tiny-read.yaml`` until dev early stopping ends it (dev CER,
  ``--patience`` validations every 100 updates without a better one, none before ``--min-steps``) or
  ``--max-steps``, once per training seed: ``scratch`` (random init, everything trained), ``scratch-frozen``
  (random init, the local tower frozen at its random weights: the control that separates what pretraining
  gives from what freezing the local tower gives), ``synthetic``
  (the shipped synthetic-speech checkpoint), ``real`` (``--real``, by default the shipped real-speech
  checkpoint), and any ``--init NAME=CKPT``; pretrained starts keep their local tower frozen and have
  their top three Transformer layers re-initialised (the preset's ``reinit_layers``).
- Early stopping and LM tuning use 16 utterances of each dev speaker (64, 13 min). Scoring on every test
  utterance: greedy, and beam search with a word 3-gram LM of the train speakers' transcripts (LM weight
  and word score chosen on dev per model).

Prints and writes (``--out``: ``table.md``, ``results.json``, ``librispeech.png``) the mean and spread over
seeds of test WER and CER per budget and arm, the relative change of each pretrained arm against scratch,
and the CPU minutes per arm (user + system time of the fine-tuning and scoring). Runs finished earlier
(their ``result.json``) are reused and an interrupted run continues from its newest checkpoint (its CPU
minutes then count only the part run since), so an interrupted benchmark resumes; ``--report`` trains nothing and
tables every finished run under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import real_corpora  # noqa: E402
from label_budget import best_step, last_step, nested_subsets, plot_groups  # noqa: E402

from cssl.cli.options import seed_list  # noqa: E402
from cssl.data.manifest import Manifest, write_manifest  # noqa: E402
from cssl.experiments.label_budget import FIGURES, checkpoint_tag, mean_cell, mean_spread  # noqa: E402
from cssl.experiments.steps import PRETRAINED, finetune, interrupted, score  # noqa: E402
from cssl.utils.config import preset  # noqa: E402

PRESET = preset("finetune/tiny-read.yaml")
ARMS = ("scratch", "scratch-frozen", "synthetic", "real")
RANDOM_ARMS = ("scratch", "scratch-frozen")
"""Arms from random init: ``scratch-frozen`` keeps the random local tower frozen, as pretrained arms keep theirs."""
DEV_PER_SPEAKER = 16


def cpu_minutes_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) / 60


def cpu_minutes_of_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) / 60


def prepare(data: Path, out: Path, budgets: list[float], seed: int) -> dict[str, Path]:
    """Writes the split's manifests, the label subsets and the LM into ``out``; returns their paths."""
    corpus = real_corpora.librispeech(data / real_corpora.FOLDERS["ls"])
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.jsonl" for name in ("train", "dev", "test")}
    for name, path in paths.items():
        write_manifest(corpus.labeled[name], path)
    paths["dev-small"] = out / "dev-small.jsonl"
    write_manifest(Manifest(Path("/"), real_corpora.first_per_speaker(list(corpus.labeled["dev"]), DEV_PER_SPEAKER)),
                   paths["dev-small"])
    for minutes, subset in nested_subsets(corpus.labeled["train"], budgets, seed).items():
        paths[f"labels-{minutes:g}"] = out / f"labels-{minutes:g}min.jsonl"
        write_manifest(subset, paths[f"labels-{minutes:g}"])
        print(f"{minutes:g} min of labels: {len(subset)} utterances of {len({e.speaker for e in subset})} speakers, "
              f"{subset.hours * 60:.1f} min", flush=True)
    paths["lm"] = out / "lm.arpa"
    if not paths["lm"].exists():
        from cssl.decode.lm import build_ngram, write_arpa

        write_arpa(build_ngram([e.text or "" for e in corpus.labeled["train"]], order=3), paths["lm"])
    paths["test_speakers"] = out / "test_speakers.json"
    paths["test_speakers"].write_text(json.dumps(sorted(corpus.test_speakers)) + "\n", encoding="utf-8")
    return paths


def run_arm(args, paths: dict[str, Path], minutes: float, arm: str, init: Path | None, seed: int,
            labels: Path | None = None, run: Path | None = None, config: Path = PRESET,
            fields: dict | None = None) -> dict:
    """One fine-tuning run and its scores (reused when finished earlier): ``labels`` (default: the budget's
    random subset) into ``run`` (default: ``--out``/MINUTESmin/ARM[-CKPT][-TAG]-seedN) with ``config``;
    ``fields`` join the row its ``result.json`` keeps."""
    if run is None:
        tag = "-".join(p for p in (arm, checkpoint_tag(init) if init else "", args.tag) if p)
        run = args.out / f"{minutes:g}min" / f"{tag}-seed{seed}"
    done = run / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    print(f"== {minutes:g} min of labels, {arm}, seed {seed}", flush=True)
    clock, cpu = time.monotonic(), cpu_minutes_of_children() + cpu_minutes_of_self()
    resumed = interrupted(run)  # an interrupted run continues: its CPU minutes count from here
    overrides = [f"seed={seed}", f"early_stop.patience={args.patience}", f"early_stop.min_steps={args.min_steps}",
                 *([f"threads={args.threads}"] if args.threads else []), *args.set]
    best = finetune(arm if arm in RANDOM_ARMS else "pretrained", labels or paths[f"labels-{minutes:g}"],
                    paths["dev-small"], run, args.max_steps, init or PRETRAINED, overrides, config=config, resume=True)
    greedy, with_lm, tuning = score(best, paths["dev-small"], paths["test"], paths["lm"], run / "test", arm)
    row = {"minutes": minutes, "arm": arm, "seed": seed, "init": str(init) if init else None,
           "steps": last_step(run), "best_step": best_step(run, "cer"),
           "wall_minutes": round((time.monotonic() - clock) / 60, 1),
           "cpu_minutes": round(cpu_minutes_of_children() + cpu_minutes_of_self() - cpu, 1),
           "greedy": {"wer": greedy.wer, "cer": greedy.cer}, "lm": {"wer": with_lm.wer, "cer": with_lm.cer},
           "lm_weight": tuning.lm_weight, "word_score": tuning.word_score, "overrides": args.set,
           "resumed": resumed, **(fields or {})}
    done.write_text(json.dumps(row), encoding="utf-8")
    return row


def grouped(rows: list[dict]) -> dict[tuple[float, str], list[dict]]:
    """Runs by (minutes, arm): budgets in order, scratch first."""
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["minutes"], r["arm"] != "scratch", r["arm"], r["seed"])):
        groups.setdefault((r["minutes"], r["arm"]), []).append(r)
    return groups


def table(rows: list[dict]) -> str:
    groups = grouped(rows)
    lines = ["| labels | arm | seeds | updates (best at) | CPU min (mean) | WER greedy | CER greedy | WER + LM | CER + LM |",
             "|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for (minutes, arm), runs in groups.items():
        cells = [mean_cell(runs, decoder, metric) for decoder, metric in FIGURES]
        updates = ", ".join(f"{r['steps']} ({r['best_step']})" for r in runs)
        cpu = statistics.fmean(r["cpu_minutes"] for r in runs)
        lines.append(f"| {minutes:g} min | {arm} | {len(runs)} | {updates} | {cpu:.0f} | {' | '.join(cells)} |")
    changes = []
    for (minutes, arm), runs in groups.items():
        scratch = groups.get((minutes, "scratch"))
        if arm != "scratch" and scratch:
            gains = [mean_spread(runs, d, m)[0] / mean_spread(scratch, d, m)[0] - 1 for d, m in FIGURES]
            changes.append(f"| {minutes:g} min | {arm} | " + " | ".join(f"{g:+.1%}" for g in gains) + " |")
    if changes:
        lines += ["", "| labels | arm vs scratch (means) | WER greedy | CER greedy | WER + LM | CER + LM |",
                  "|---:|---|---:|---:|---:|---:|", *changes]
    return "\n".join(lines)


def write(out: Path, rows: list[dict]) -> None:
    text = table(rows)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (out / "table.md").write_text(text + "\n", encoding="utf-8")
    plot_groups(grouped(rows), out / "librispeech.png", "Mini LibriSpeech test speakers: {metric}", top=1.1)
    print(f"# Mini LibriSpeech, test speakers\n\n{text}\n\nplot: {out / 'librispeech.png'}")


def report(out: Path, pattern: str, write_table) -> int:
    """``--report``: tables every finished run (``result.json`` files matching ``pattern`` under ``out``)."""
    rows = [json.loads(p.read_text()) for p in sorted(out.glob(pattern))]
    if not rows:
        print(f"{out}: no finished run")
        return 1
    write_table(out, rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "librispeech")
    parser.add_argument("--budgets", default="10,60", help="minutes of labels, comma separated")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma separated, among {', '.join(ARMS)}")
    parser.add_argument("--real", type=Path, default=real_corpora.REAL_PRETRAINED, help="the real-speech checkpoint of the 'real' arm")
    parser.add_argument("--init", action="append", default=[], metavar="NAME=CKPT", help="another pretrained arm")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("3"),
                        help="training seeds: a count N (seeds 1..N) or a comma list (2,3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the label subsets")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--patience", type=int, default=8, help="validations (every 100 updates) without a better dev CER")
    parser.add_argument("--min-steps", type=int, default=1000, help="no early stop before this many updates")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a fine-tuning override of every run; needs --tag")
    parser.add_argument("--tag", default="", help="names the runs made with --set")
    parser.add_argument("--report", action="store_true", help="table the finished runs under --out; train nothing")
    args = parser.parse_args(argv)
    if bool(args.set) != bool(args.tag):
        parser.error("--set and --tag go together: the tag names the runs the overrides make")
    if args.report:
        return report(args.out, "*min/*-seed*/result.json", write)
    if "ls" not in real_corpora.available(args.data):
        print(f"{args.data}: no librispeech-mini here; nothing to do")
        return 0
    arms: dict[str, Path | None] = {}
    for arm in (a for a in args.arms.split(",") if a):
        if arm not in ARMS:
            parser.error(f"--arms: {arm!r}; choose among {', '.join(ARMS)}")
        arms[arm] = None if arm in RANDOM_ARMS else PRETRAINED if arm == "synthetic" else args.real
    for spec in args.init:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--init {spec}: give NAME=CKPT")
        arms[name] = Path(path)
    missing = [str(p) for p in arms.values() if p is not None and not p.exists()]
    if missing:
        parser.error(f"checkpoint not found: {', '.join(missing)}")
    budgets = [float(b) for b in args.budgets.split(",")]
    paths = prepare(args.data, args.out, budgets, args.seed)
    tests = set(json.loads(paths["test_speakers"].read_text()))
    for init in arms.values():
        if init is not None:
            real_corpora.refuse_checkpoint(init, tests, "LibriSpeech-mini")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = [run_arm(args, paths, minutes, arm, init, seed)
            for minutes in budgets for arm, init in arms.items() for seed in args.seeds]
    write(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
