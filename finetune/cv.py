"""K-fold cross-validation over a small grid of fine-tuning settings, then the final run.

    cssl finetune configs/finetune/tiny.yaml data.manifest=corpus/train.jsonl \\
        data.valid_manifest=corpus/dev.jsonl --cv 3

The labeled set is split into K disjoint folds that together cover it (a speaker's
utterances stay in one fold when the manifest names speakers, and folds are balanced by
audio duration). Every combination of ``cv.grid`` is fine-tuned K times, each time on
K-1 folds with the remaining fold as its dev set (early stopping on it), and scored by
its best dev WER. ``OUT/cv/summary.md`` (and ``.json``, ``.png``) gives the mean and
spread per setting; the setting with the lowest mean WER (then CER) is used for the
final run on the whole labeled set, validated on ``data.valid_manifest``, in ``OUT``.
A fold run that finished is not run again when the command is repeated.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cssl.data.manifest import Manifest, read_manifest, write_manifest
from cssl.train.progress import read_history
from cssl.utils.config import override
from cssl.utils.io import atomic_write, atomic_write_lines
from finetune.config import FinetuneConfig


@dataclass
class FoldResult:
    """Best dev figures of one setting on one fold."""

    wer: float
    """Lowest dev WER of the run."""
    cer: float
    """Dev CER at that validation."""
    step: int
    """Update of that validation."""


@dataclass
class SettingResult:
    """A grid setting and its per-fold results."""

    setting: dict[str, Any]
    """Config keys and values of this grid point."""
    folds: list[FoldResult]
    """One result per fold."""

    @property
    def mean_wer(self) -> float:
        return statistics.fmean(f.wer for f in self.folds)

    @property
    def std_wer(self) -> float:
        return statistics.stdev(f.wer for f in self.folds) if len(self.folds) > 1 else 0.0

    @property
    def mean_cer(self) -> float:
        return statistics.fmean(f.cer for f in self.folds)

    @property
    def label(self) -> str:
        return setting_label(self.setting)


def kfold(manifest: Manifest, k: int, seed: int = 0, by_speaker: bool = True) -> list[list[int]]:
    """Indices of ``k`` disjoint folds covering ``manifest``, balanced by duration.

    With ``by_speaker`` and a speaker on every entry (and at least ``k`` speakers), each
    speaker's utterances go to one fold; otherwise utterances are dealt one by one.
    """
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    if len(manifest) < k:
        raise ValueError(f"cannot split {len(manifest)} utterances into {k} folds")
    speakers = [e.speaker for e in manifest]
    units: list[list[int]]
    if by_speaker and None not in speakers and len(set(speakers)) >= k:
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(speakers):
            groups.setdefault(s, []).append(i)  # type: ignore[arg-type]
        units = list(groups.values())
    else:
        units = [[i] for i in range(len(manifest))]
    random.Random(f"{seed}:kfold").shuffle(units)
    size = lambda unit: sum(manifest[i].num_samples for i in unit)  # noqa: E731
    units.sort(key=size, reverse=True)  # stable: equal sizes keep the shuffled order
    folds: list[list[int]] = [[] for _ in range(k)]
    loads = [0] * k
    for unit in units:  # the longest unit left goes to the lightest fold
        j = min(range(k), key=lambda f: (loads[f], len(folds[f])))
        folds[j] += unit
        loads[j] += size(unit)
    return [sorted(f) for f in folds]


def grid_settings(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order of its keys."""
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"cv.grid.{key}: give a non-empty list of values to try")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def with_setting(cfg: FinetuneConfig, setting: dict[str, Any]) -> FinetuneConfig:
    """A deep copy of ``cfg`` with a grid setting applied (keys checked like YAML keys)."""
    out = copy.deepcopy(cfg)
    for key, value in setting.items():
        out = override(out, key, value, source=f"cv.grid ({key})")
    return out


def best_validation(run_dir: Path) -> FoldResult:
    """The validation with the lowest WER (then CER) in a run's metrics."""
    valid = [r for r in read_history(run_dir / "metrics.jsonl") if r.get("split") == "valid"]
    if not valid:
        raise RuntimeError(f"{run_dir}: the run logged no validation; lower valid_every below max_steps")
    best = min(valid, key=lambda r: (r["wer"], r["cer"], r["step"]))
    return FoldResult(float(best["wer"]), float(best["cer"]), int(best["step"]))


def cross_validate(cfg: FinetuneConfig, train: Callable[[FinetuneConfig], Path]) -> tuple[list[SettingResult], Path]:
    """Runs the grid on every fold, writes the summary, trains the final model; returns results and its path."""
    out = Path(cfg.out_dir)
    k = cfg.cv.folds
    manifest = read_manifest(cfg.data.manifest)
    if not manifest.labeled:
        raise ValueError(f"{cfg.data.manifest}: cross-validation needs transcripts for every utterance")
    settings = grid_settings(cfg.cv.grid)
    for setting in settings:
        with_setting(cfg, setting)  # every key is checked before anything runs
    suffix = Path(cfg.data.manifest).suffix
    folds = kfold(manifest, k, cfg.seed, cfg.cv.by_speaker)
    for f, held_out in enumerate(folds):
        rest = sorted(set(range(len(manifest))) - set(held_out))
        write_manifest(manifest.subset(rest), out / "cv" / f"fold{f}" / f"train{suffix}")
        write_manifest(manifest.subset(held_out), out / "cv" / f"fold{f}" / f"dev{suffix}")
    results = []
    for s, setting in enumerate(settings):
        fold_results = []
        for f in range(k):
            run_dir = out / "cv" / f"setting{s}" / f"fold{f}"
            done = run_dir / "result.json"
            if done.is_file():
                fold_results.append(FoldResult(**json.loads(done.read_text())))
                continue
            run = with_setting(cfg, setting)
            run = override(run, "data.manifest", str(out / "cv" / f"fold{f}" / f"train{suffix}"), "cv")
            run = override(run, "data.valid_manifest", str(out / "cv" / f"fold{f}" / f"dev{suffix}"), "cv")
            run = override(run, "out_dir", str(run_dir), "cv")
            run = override(run, "cv.folds", 0, "cv")
            run = override(run, "calibrate", False, "cv")
            run = override(run, "resume", "auto", "cv")
            if cfg.cv.max_steps is not None:
                run = override(run, "optim.max_steps", cfg.cv.max_steps, "cv")
            print(f"cross-validation: setting {s + 1}/{len(settings)} ({setting_label(setting)}), fold {f + 1}/{k}", flush=True)
            train(run)
            result = best_validation(run_dir)
            atomic_write_lines(done, [json.dumps(result.__dict__)])
            fold_results.append(result)
        results.append(SettingResult(setting, fold_results))
    best = min(results, key=lambda r: (r.mean_wer, r.mean_cer))
    write_summary(results, best, out / "cv")
    print(summary_table(results, best), flush=True)
    print(f"cross-validation: best setting {best.label}; training the final model on all labels", flush=True)
    final = with_setting(cfg, best.setting)
    final = override(final, "cv.folds", 0, "cv")
    return results, train(final)


def summary_table(results: list[SettingResult], best: SettingResult) -> str:
    """Markdown table of mean and spread per setting, the chosen one marked."""
    k = len(results[0].folds)
    lines = ["| setting | mean dev WER | std | mean dev CER | " + " | ".join(f"fold {f}" for f in range(k)) + " |",
             "|---|---:|---:|---:|" + "---:|" * k]
    for r in results:
        mark = " **(best)**" if r is best else ""
        lines.append(f"| {r.label}{mark} | {r.mean_wer:.4f} | {r.std_wer:.4f} | {r.mean_cer:.4f} | "
                     + " | ".join(f"{f.wer:.4f}" for f in r.folds) + " |")
    return "\n".join(lines)


def write_summary(results: list[SettingResult], best: SettingResult, out: Path) -> None:
    """``summary.md``, ``summary.json`` and ``summary.png`` (mean dev WER with its spread)."""
    records = [{"setting": r.setting, "mean_wer": r.mean_wer, "std_wer": r.std_wer, "mean_cer": r.mean_cer,
                "folds": [f.__dict__ for f in r.folds]} for r in results]
    atomic_write_lines(out / "summary.json", [json.dumps({"best": best.setting, "settings": records}, indent=1)])
    atomic_write_lines(out / "summary.md", [f"# Cross-validation, {len(best.folds)} folds", "",
                                            summary_table(results, best)])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(results)), 4))
    x = range(len(results))
    ax.errorbar(x, [r.mean_wer for r in results], yerr=[r.std_wer for r in results], fmt="o", capsize=5)
    ax.set_xticks(list(x), [r.label.replace(", ", "\n") for r in results], fontsize=8)
    ax.set(ylabel="dev WER (mean ± std over folds)", title=f"Cross-validation, {len(best.folds)} folds")
    fig.tight_layout()
    atomic_write(out / "summary.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def setting_label(setting: dict[str, Any]) -> str:
    """``key=value, ...`` of a grid setting."""
    return ", ".join(f"{k}={v}" for k, v in setting.items())
