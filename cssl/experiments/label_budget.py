"""Label-budget results (``benchmarks/label_budget.py``): grouping, mean and spread over seeds,
the relative reductions and the label-efficiency line, shared by the benchmark and the demo.

A result row: ``minutes`` of labels, ``model`` (``pretrained`` / ``scratch``, or ``self-trained``: the
pretrained checkpoint fine-tuned again on the labels and the pretrained run's confident
transcripts of unlabeled audio), ``seed``, and
``greedy`` / ``lm`` dicts of test ``wer`` and ``cer``. The benchmark's ``--publish`` ships its
rows as :data:`SHIPPED`, which the demo quotes.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from cssl import ASSETS

MODELS = ("pretrained", "scratch")
"""The arms the benchmark trains from the labels alone."""
SELF_TRAINED = "self-trained"
"""The arm that also learns from pseudo-labels (``--self-train``)."""
ORDER = ("pretrained", SELF_TRAINED, "scratch")
"""Every arm, in table order."""
FIGURES = (("greedy", "wer"), ("greedy", "cer"), ("lm", "wer"), ("lm", "cer"))
SHIPPED = ASSETS / "label_budget.json"
"""The benchmark's rows for the shipped checkpoint (written by ``label_budget.py --publish``)."""


def mean_spread(rows: list[dict], decoder: str, metric: str) -> tuple[float, float]:
    """Mean and standard deviation (0 for one run) of a figure over runs."""
    values = [r[decoder][metric] for r in rows]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_cell(rows: list[dict], decoder: str, metric: str) -> str:
    """A table cell: the mean of a figure over runs, with its standard deviation when there are several."""
    mean, sd = mean_spread(rows, decoder, metric)
    return f"{mean:.3f}" if len(rows) == 1 else f"{mean:.3f} ± {sd:.3f}"


def arm(row: dict) -> str:
    """A row's arm: its model, and for self-training after the first round, the round (``self-trained x2``)."""
    rounds = row.get("round", 1)
    return row["model"] if rounds == 1 else f"{row['model']} x{rounds}"


def group(rows: list[dict]) -> dict[tuple[float, str], list[dict]]:
    """Runs by (minutes, arm), in budget order."""
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["minutes"], ORDER.index(r["model"]), r.get("round", 1), r["seed"])):
        groups.setdefault((r["minutes"], arm(r)), []).append(r)
    return groups


def reductions(rows: list[dict]) -> dict[float, list[float]]:
    """Per budget with both models: 1 - pretrained / scratch of each of :data:`FIGURES` (means over seeds)."""
    groups = group(rows)
    out = {}
    for minutes in sorted({k[0] for k in groups}):
        pre, scratch = groups.get((minutes, "pretrained")), groups.get((minutes, "scratch"))
        if pre and scratch:
            out[minutes] = [1 - mean_spread(pre, d, m)[0] / mean_spread(scratch, d, m)[0] for d, m in FIGURES]
    return out


def reduction_line(rows: list[dict]) -> str | None:
    """The relative reductions at the largest budget, in words (None when it lacks a model)."""
    found = reductions(rows)
    if not found:
        return None
    minutes, gains = max(found.items())
    seeds = len(group(rows)[(minutes, "pretrained")])
    runs = f"{seeds} seed{'s' if seeds != 1 else ''}"
    return (f"With {minutes:g} min of labels, each model fine-tuned until dev early stopping ends it ({runs}), "
            "pretraining lowers " + ", ".join(f"{d} {m.upper()} by {g:.1%}" for (d, m), g in zip(FIGURES, gains))
            + " relative to scratch.")


def efficiency_line(rows: list[dict], model: str = "pretrained") -> str | None:
    """``model`` (pretrained or self-trained) at the smallest budget against scratch at the largest, every
    figure (means)."""
    groups = group(rows)
    budgets = sorted({k[0] for k in groups})
    if len(budgets) < 2:
        return None
    low, high = groups.get((budgets[0], model)), groups.get((budgets[-1], "scratch"))
    if not (low and high):
        return None
    return (f"Label efficiency: {model} with {budgets[0]:g} min of labels against scratch with {budgets[-1]:g} min "
            f"(means of {len(low)} and {len(high)} seeds): "
            + ", ".join(f"{d} {m.upper()} {mean_spread(low, d, m)[0]:.3f} vs {mean_spread(high, d, m)[0]:.3f}"
                        for d, m in FIGURES) + ".")


def checkpoint_tag(path: Path) -> str:
    """Name and size of a checkpoint file: a new checkpoint gets new runs (and new shipped figures)."""
    return f"{path.stem}-{path.stat().st_size}"


def run_name(minutes: float, model: str, seed: int, tag: str, variant: str = "") -> str:
    """A run's folder name: budget, model, seed, for pretrained runs the checkpoint's tag, so that
    scratch runs are shared by every checkpoint and a new checkpoint gets new pretrained runs, and the
    name of a recipe ``variant`` (fine-tuning overrides) when there is one."""
    if model not in ORDER:
        raise ValueError(f"model {model!r}: one of {', '.join(ORDER)}")
    suffix = (f"-{tag}" if model != "scratch" else "") + (f"-{variant}" if variant else "")
    return f"{minutes:g}min-{model}{suffix}-seed{seed}"


def shipped_line(pretrained: Path, path: Path = SHIPPED) -> str:
    """The label-efficiency line of the published benchmark when it measured ``pretrained``, else why not."""
    shipped = read_shipped(path)
    if shipped is None or not pretrained.is_file() or shipped.get("checkpoint") != checkpoint_tag(pretrained):
        return (f"Label efficiency: not measured for {pretrained.name} yet "
                "(python benchmarks/label_budget.py --publish measures it: 1 and 10 minutes of labels, 3 seeds).")
    lines = [line for line in (reduction_line(shipped["rows"]), efficiency_line(shipped["rows"])) if line]
    if not lines:
        return "Label efficiency: no rows."
    return " ".join(lines) + " From benchmarks/label_budget.py on this checkpoint."


def read_shipped(path: Path = SHIPPED) -> dict | None:
    """``{"checkpoint": ..., "rows": [...]}`` of the published benchmark, or None."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
