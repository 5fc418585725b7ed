"""K-fold cross-validation: folds disjoint and covering, grid expansion, choice of the best setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cssl.cli.stages import run_stage
from cssl.data.manifest import Entry, Manifest, read_manifest
from cssl.utils.config import ConfigError, load_config
from finetune.cli import check
from finetune.config import FinetuneConfig
from finetune.cv import cross_validate, grid_settings, kfold, with_setting


def manifest(n: int, speakers: int | None) -> Manifest:
    entries = [Entry(f"u{i}.flac", 16000 + 997 * (i % 13), "A B", None if speakers is None else f"s{i % speakers}")
               for i in range(n)]
    return Manifest(Path("/data"), entries)


@pytest.mark.parametrize("n,k,speakers", [(10, 2, None), (37, 5, None), (60, 3, 7), (60, 4, 12), (9, 3, 2)])
def test_folds_are_disjoint_and_cover_the_set(n: int, k: int, speakers: int | None) -> None:
    m = manifest(n, speakers)
    folds = kfold(m, k, seed=1)
    assert len(folds) == k and all(folds)
    flat = [i for f in folds for i in f]
    assert sorted(flat) == list(range(n))  # each index exactly once: disjoint and complete
    if speakers is not None and speakers >= k:  # a speaker never spans two folds
        owner = {}
        for f, fold in enumerate(folds):
            for i in fold:
                assert owner.setdefault(m[i].speaker, f) == f
    if speakers is None:  # utterance-level folds are balanced in duration within one utterance
        loads = [sum(m[i].num_samples for i in f) for f in folds]
        assert max(loads) - min(loads) <= max(e.num_samples for e in m)


def test_folds_depend_on_seed_only() -> None:
    m = manifest(30, None)
    assert kfold(m, 3, seed=4) == kfold(m, 3, seed=4)
    assert kfold(m, 3, seed=4) != kfold(m, 3, seed=5)


def test_too_few_utterances_or_folds_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold(manifest(10, None), 1)
    with pytest.raises(ValueError, match="cannot split 3 utterances into 4"):
        kfold(manifest(3, None), 4)


def test_grid_is_the_cartesian_product_and_keys_are_checked() -> None:
    settings = grid_settings({"optim.lr": [1e-4, 1e-3, 1e-2], "freeze.context_layers": [0, 2]})
    assert len(settings) == 6 and len({json.dumps(s, sort_keys=True) for s in settings}) == 6
    cfg = FinetuneConfig()
    tuned = with_setting(cfg, {"optim.lr": 0.01, "freeze.context_layers": 2})
    assert (tuned.optim.lr, tuned.freeze.context_layers) == (0.01, 2)
    assert cfg.optim.lr != 0.01  # the base config is left alone
    with pytest.raises(ConfigError, match="optim.lrr"):
        with_setting(cfg, {"optim.lrr": 1})
    with pytest.raises(ValueError, match="non-empty list"):
        grid_settings({"optim.lr": []})


def test_cross_validation_trains_every_fold_and_picks_the_lowest_mean_wer(tmp_path: Path) -> None:
    from cssl.data.manifest import write_manifest

    labeled = tmp_path / "train.jsonl"
    write_manifest(manifest(24, 6), labeled)
    cfg = load_config(FinetuneConfig, None, [f"data.manifest={labeled}", "data.valid_manifest=dev.jsonl",
                                             f"out_dir={tmp_path / 'out'}", "cv.folds=3", "cv.max_steps=7"])
    cfg.cv.grid = {"optim.lr": [0.001, 0.002, 0.003], "freeze.context_layers": [0, 1]}
    true_wer = {(0.001, 0): 0.5, (0.001, 1): 0.4, (0.002, 0): 0.3, (0.002, 1): 0.35, (0.003, 0): 0.9, (0.003, 1): 0.6}
    calls = []

    def fake_train(run: FinetuneConfig) -> Path:  # logs a dev WER set by the setting, plus fold noise
        calls.append(run)
        out = Path(run.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if run.cv.folds == 0 and run.out_dir == cfg.out_dir:
            return out / "best.pt"
        fold = int(out.name[-1])
        train, dev = read_manifest(run.data.manifest), read_manifest(run.data.valid_manifest)
        assert len(train) + len(dev) == 24 and not {e.path for e in train} & {e.path for e in dev}
        wer = true_wer[(run.optim.lr, run.freeze.context_layers)] + 0.01 * fold
        (out / "metrics.jsonl").write_text(
            json.dumps({"split": "valid", "step": 5, "wer": wer + 0.2, "cer": 0.5}) + "\n"
            + json.dumps({"split": "valid", "step": 7, "wer": wer, "cer": wer / 2}) + "\n")
        return out / "best.pt"

    results, final = cross_validate(cfg, fake_train)
    assert len(calls) == 6 * 3 + 1
    assert all(c.optim.max_steps == 7 and not c.calibrate for c in calls[:-1])
    assert (calls[-1].optim.lr, calls[-1].freeze.context_layers) == (0.002, 0)  # lowest mean WER
    assert calls[-1].data.manifest == str(labeled) and calls[-1].data.valid_manifest == "dev.jsonl"
    by = {(r.setting["optim.lr"], r.setting["freeze.context_layers"]): r for r in results}
    assert by[(0.002, 0)].mean_wer == pytest.approx(0.31) and by[(0.002, 0)].std_wer == pytest.approx(0.01)
    summary = (tmp_path / "out" / "cv" / "summary.md").read_text()
    assert "optim.lr=0.002, freeze.context_layers=0 **(best)**" in summary
    assert (tmp_path / "out" / "cv" / "summary.png").stat().st_size > 0
    calls.clear()
    cross_validate(cfg, fake_train)  # finished fold runs are not run again
    assert len(calls) == 1


def test_cv_flag_sets_the_folds(capsys: pytest.CaptureFixture[str]) -> None:
    flags = {"--cv": ("cv.folds", "K-fold cross-validation")}
    assert run_stage("prog", "", FinetuneConfig, check, lambda cfg: None, ["--cv", "4", "--print-config"], flags) == 0
    assert any(line.startswith("cv.folds = 4") for line in capsys.readouterr().out.splitlines())
    assert run_stage("prog", "", FinetuneConfig, check, lambda cfg: None, ["data.manifest=x.tsv", "--cv", "1"], flags) == 2
    assert "at least 2" in capsys.readouterr().err
