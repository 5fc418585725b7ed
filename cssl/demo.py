"""The main job on the embedded demo corpus: ``make demo`` (``python -m cssl.demo``).

Phases, each with its own progress display:

1. synthesize the multi-speaker demo corpus with eSpeak NG (cached: a second run
   reuses it), and report its splits;
2. pretrain the ``tiny`` model contrastively on the unlabeled split, validating on dev;
3. write ``report.md`` and ``pretrain_curves.png`` (loss and accuracy against chance)
   into the output folder.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

from cssl.config import load_config
from cssl.train.progress import read_history

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN_PRESET = ROOT / "configs" / "pretrain" / "tiny.yaml"


def synthesize(out: Path, hours: float, seed: int):
    from cssl.synth.corpus import synthesize_corpus

    summary = synthesize_corpus(out, hours=hours, seed=seed, vocab_size=300)
    print(summary.table())
    return summary


def pretrain(corpus: Path, out: Path, minutes: float, steps: int) -> Path:
    from pretrain.config import PretrainConfig
    from pretrain.train import main

    overrides = [
        f"data.manifest={corpus / 'unlabeled.tsv'}",
        f"data.valid_manifest={corpus / 'dev.tsv'}",
        f"out_dir={out}",
        f"max_minutes={minutes}",
        f"optim.max_steps={steps}",
    ]
    if out.exists():  # a new demo run pretrains afresh; only the corpus is cached
        shutil.rmtree(out)
    return main(load_config(PretrainConfig, PRETRAIN_PRESET, overrides))


def plot_pretraining(run: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = read_history(run / "metrics.jsonl")
    train = [r for r in history if r["split"] == "train"]
    valid = [r for r in history if r["split"] == "valid"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["contrastive"] for r in train], label="train")
    ax1.plot([r["step"] for r in valid], [r["contrastive"] for r in valid], "o-", label="dev")
    if train:
        ax1.axhline(math.log(1 / train[0]["chance"]), color="grey", ls="--", label="chance: log(K+1)")
    ax1.set(xlabel="update", ylabel="contrastive loss (nats)", title="Contrastive loss")
    ax1.legend()
    ax2.plot([r["step"] for r in train], [r["accuracy"] for r in train], label="train")
    ax2.plot([r["step"] for r in valid], [r["accuracy"] for r in valid], "o-", label="dev")
    if train:
        ax2.axhline(train[0]["chance"], color="grey", ls="--", label="chance: 1/(K+1)")
    ax2.set(xlabel="update", ylabel="accuracy", title="Target picked among distractors")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def write_report(out: Path, corpus, run: Path, seconds: float) -> Path:
    history = read_history(run / "metrics.jsonl")
    train = [r for r in history if r["split"] == "train"]
    valid = [r for r in history if r["split"] == "valid"]
    lines = ["# cssl demo report", "", f"Wall time: {seconds / 60:.1f} min.", "", "## Corpus", ""]
    lines += corpus.table().splitlines()[2:]
    lines += ["", "Test speakers use voice variants heard in no other split.", "", "## Pretraining (tiny)", ""]
    if train:
        last = train[-1]
        lines.append(f"Updates: {last['step']}; final train contrastive loss {last['contrastive']:.3f} "
                     f"(chance {math.log(1 / last['chance']):.3f}), accuracy {last['accuracy']:.1%} "
                     f"(chance {last['chance']:.1%}).")
    if valid:
        lines.append(f"Dev: contrastive loss {valid[-1]['contrastive']:.3f}, accuracy {valid[-1]['accuracy']:.1%}.")
    lines += ["", "![pretraining curves](pretrain_curves.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cssl.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--hours", type=float, default=1.0, help="demo corpus size")
    parser.add_argument("--pretrain-minutes", type=float, default=6.0, help="wall-time budget of pretraining")
    parser.add_argument("--pretrain-steps", type=int, default=2000, help="update budget of pretraining")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    corpus = args.out / "corpus"
    print(f"== 1/3 demo corpus ({args.hours} h) in {corpus}", flush=True)
    info = synthesize(corpus, args.hours, args.seed)
    print(f"== 2/3 pretraining the tiny model on {corpus / 'unlabeled.tsv'}", flush=True)
    run = args.out / "pretrain"
    pretrain(corpus, run, args.pretrain_minutes, args.pretrain_steps)
    print("== 3/3 report", flush=True)
    plot_pretraining(run, args.out / "pretrain_curves.png")
    report = write_report(args.out, info, run, time.monotonic() - started)
    print(report.read_text())
    print(f"report: {report}; plot: {args.out / 'pretrain_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
