"""Training curves as PNG files, drawn from a run's ``metrics.jsonl``.

``pretrain_curves.png``: loss parts, contrastive accuracy against chance and codebook
perplexity; ``finetune_curves.png``: dev WER and CER of one or more runs. Both stages
refresh their plot whenever they write a checkpoint, so a long run can be looked at
while it trains.
"""

from __future__ import annotations

import math
from pathlib import Path

from cssl.train.progress import read_history
from cssl.utils.io import atomic_write


def plot_pretraining(run: str | Path, png: str | Path) -> None:
    """Panels from ``run/metrics.jsonl``: losses, accuracy vs chance, code perplexity, and the
    phonetic probe's PNMI per level when validation ran it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = read_history(Path(run) / "metrics.jsonl")
    train = [r for r in history if r["split"] == "train"]
    valid = [r for r in history if r["split"] == "valid"]
    steps = [r["step"] for r in train]
    probed = [r for r in valid if "pnmi" in r]
    fig, axes = plt.subplots(1, 4 if probed else 3, figsize=(20 if probed else 15, 4))
    ax1, ax2, ax3 = axes[:3]
    for key in ("contrastive", "diversity", "penalty"):
        if train and key in train[0]:
            ax1.plot(steps, [r[key] for r in train], label=f"train {key}")
    ax1.plot([r["step"] for r in valid], [r["contrastive"] for r in valid], "o-", ms=3, label="dev contrastive")
    if train:
        ax1.axhline(math.log(1 / train[0]["chance"]), color="grey", ls="--", label="chance: log(K+1)")
    ax1.set(xlabel="update", ylabel="loss (nats per masked frame)", title="Loss parts")
    ax1.legend(fontsize=8)
    ax2.plot(steps, [r["accuracy"] for r in train], label="train")
    ax2.plot([r["step"] for r in valid], [r["accuracy"] for r in valid], "o-", ms=3, label="dev")
    if train:
        ax2.axhline(train[0]["chance"], color="grey", ls="--", label="chance: 1/(K+1)")
    ax2.set(xlabel="update", ylabel="accuracy", title="Target picked among distractors")
    ax2.legend(fontsize=8)
    for key, label in (("code_ppl", "codes used (hard)"), ("prob_ppl", "soft assignment")):
        if train and key in train[0]:
            ax3.plot(steps, [r[key] for r in train], label=label)
    ax3.set(xlabel="update", ylabel="perplexity (summed over codebooks)", title="Codebook perplexity")
    ax3.legend(fontsize=8)
    if probed:
        levels = [k for k in probed[-1] if k.startswith("pnmi_")]
        for key in levels:
            points = [(r["step"], r[key]) for r in probed if key in r]
            axes[3].plot(*zip(*points), "o-", ms=3, label=key[len("pnmi_"):])
        axes[3].set(xlabel="update", ylabel="PNMI", title="Phonetic probe (dev, k-means units)")
        axes[3].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def plot_finetuning(runs: dict[str, Path], png: str | Path) -> None:
    """Dev WER and CER against updates for each named run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        valid = [r for r in read_history(Path(run) / "metrics.jsonl") if r["split"] == "valid"]
        ax1.plot([r["step"] for r in valid], [r["wer"] for r in valid], "o-", label=name, ms=3)
        ax2.plot([r["step"] for r in valid], [r["cer"] for r in valid], "o-", label=name, ms=3)
    ax1.set(xlabel="update", ylabel="dev WER (greedy)", title="Fine-tuning: dev WER", ylim=(0, 1.05))
    ax2.set(xlabel="update", ylabel="dev CER (greedy)", title="Fine-tuning: dev CER", ylim=(0, 1.05))
    ax1.legend()
    ax2.legend()
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
