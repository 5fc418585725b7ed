"""Decoding and calibration on a model that has really learned: CTC on a noisy tone language.

A letter of the tone language is a note, a word a few notes, a sentence a few words from a
small lexicon, all under white noise; a tiny model fine-tuned from scratch for a couple of
hundred updates transcribes it with some character errors, which is what beam search with
an LM and calibration are for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from signals import tone_language_corpus, tone_words

from cssl.data.manifest import read_manifest
from cssl.decode.lm import build_ngram, write_arpa
from cssl.decode.recognizer import Recognizer
from cssl.score.evaluation import evaluate_manifest
from cssl.score.temperature import calibrate, collect, word_nll
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import load_checkpoint, save_checkpoint
from cssl.utils.config import load_config
from finetune.config import FinetuneConfig
from finetune.train import main

ROOT = Path(__file__).resolve().parents[1]
SNR_DB = 0.0
STEPS = 200


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    splits = tone_language_corpus(folder, {"train": 300, "dev": 60, "test": 60}, tone_words(30), SNR_DB, seed=0)
    best = main(load_config(FinetuneConfig, ROOT / "configs" / "finetune" / "tiny.yaml", [
        f"data.manifest={splits['train']}", f"data.valid_manifest={splits['dev']}", f"out_dir={folder / 'run'}",
        "data.num_workers=0", "data.max_batch_samples=160000", "mixed_precision=no", "freeze.feature_encoder=false",
        "freeze.encoder_steps=0", "optim.lr=0.001", f"optim.max_steps={STEPS}", "valid_every=50",
        "early_stop.patience=100", "calibrate=false",
        "specaugment.time_prob=0.05", "specaugment.channel_prob=0.0"]))  # light masking: learns in 200 updates
    lm = folder / "lm.arpa"
    write_arpa(build_ngram([e.text or "" for e in read_manifest(splits["train"])], order=3), lm)
    return {**splits, "best": best, "lm": lm}


def test_beam_search_with_lm_is_no_worse_than_greedy(trained: dict[str, Path]) -> None:
    greedy = evaluate_manifest(Recognizer.from_checkpoint(trained["best"]), trained["test"])
    beam = evaluate_manifest(Recognizer.from_checkpoint(trained["best"], lm=str(trained["lm"])), trained["test"])
    assert greedy.wer < 0.8, greedy  # the model emits words: the comparison means something
    assert beam.wer <= greedy.wer, (beam, greedy)
    assert beam.cer <= greedy.cer + 0.02, (beam, greedy)


@pytest.mark.parametrize("objective,minimised", [("ctc", "nll"), ("word", "word_nll")])
def test_calibration_lowers_its_nll_on_dev_and_held_out_data(trained: dict[str, Path], objective: str,
                                                                 minimised: str, tmp_path: Path) -> None:
    # An overconfident copy: the CTC head's logits scaled by a = 6 / T, T the model's own fitted
    # temperature. Both objectives see the logits only through logits / T, so the copy's fitted
    # temperature must be a * T = 6, whether or not the model itself was calibrated. (A factor of
    # 3 is within what separates dev from test here: test, with other voices, can prefer a
    # sharper model than dev does, and a copy only 3x too sharp may then score better there.)
    original = calibrate(trained["best"], trained["dev"], objective=objective)["temperature"]
    ckpt = load_checkpoint(trained["best"])
    ckpt["model"] = {k: v * (6 / original) if k.startswith("aux.") else v for k, v in ckpt["model"].items()}
    sharp = tmp_path / "sharp.pt"
    save_checkpoint(sharp, ckpt)
    on_dev = calibrate(sharp, trained["dev"], objective=objective)  # fitted and scored on dev
    assert on_dev["temperature"] == pytest.approx(6.0, rel=0.02), (on_dev, original)
    assert on_dev[f"{minimised}_after"] < on_dev[f"{minimised}_before"], on_dev  # the NLL it minimises drops
    figures = calibrate(sharp, trained["dev"], trained["test"], objective=objective)  # scored on test
    # held out too (a proper scoring rule; ECE over 60 test utterances is too coarse to assert on)
    assert figures[f"{minimised}_after"] < figures[f"{minimised}_before"], figures
    rec = Recognizer.from_checkpoint(sharp)
    assert rec.temperature == pytest.approx(figures["temperature"])  # inference uses the stored temperature


def test_word_objective_temperature_is_the_minimum_of_word_nll(trained: dict[str, Path]) -> None:
    ckpt = load_checkpoint(trained["best"])
    vocab = Vocabulary(tuple(ckpt["vocab"]["symbols"]))
    dev = collect(ckpt, trained["dev"])
    tau = calibrate(trained["best"], trained["dev"], objective="word")["temperature"]
    grid = [0.25 * 1.05**i for i in range(72)]  # 0.25 .. 7.3, 5% apart
    best = min(grid, key=lambda t: word_nll(dev, vocab, t))
    assert word_nll(dev, vocab, tau) <= word_nll(dev, vocab, best) + 1e-6  # the fitter finds the minimum


def test_lm_tuning_picks_the_grid_pair_with_the_lowest_dev_wer(trained: dict[str, Path], capsys) -> None:
    from cssl.cli import main as cli
    from cssl.decode.lm_tuning import tune_lm

    rec = Recognizer.from_checkpoint(trained["best"])
    tuning = tune_lm(rec, trained["dev"], trained["lm"], lm_weights=(0.5, 2.0), word_scores=(-1000.0, 0.0, 2.0))
    assert tuning.utterances == 60 and tuning.skipped == 0
    assert [(p.lm_weight, p.word_score) for p in tuning.grid] == [(w, s) for w in (0.5, 2.0) for s in (-1000.0, 0.0, 2.0)]
    by_pair = {(p.lm_weight, p.word_score): p for p in tuning.grid}
    assert tuning.wer == min(p.wer for p in tuning.grid)
    assert by_pair[0.5, -1000.0].wer > tuning.wer  # 1,000 nats per word: the search drops words it heard
    # The grid reuses one pass of the model per utterance; full decoding with the chosen pair agrees.
    chosen = Recognizer.from_checkpoint(trained["best"], lm=str(trained["lm"]), lm_weight=tuning.lm_weight,
                                        word_score=tuning.word_score)
    full = evaluate_manifest(chosen, trained["dev"])
    assert full.wer == pytest.approx(tuning.wer) and full.cer == pytest.approx(tuning.cer)
    table = tuning.table().splitlines()
    assert len(table) == 4 and table[0].count("|") == 5 and sum(line.count("**") for line in table) == 2

    assert cli(["lm", "tune", str(trained["best"]), str(trained["dev"]), str(trained["lm"]),
                "--lm-weights", "0.5", "--word-scores", "0,2", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # Progress on stderr: the model pass over dev, then the grid of 2 settings.
    assert "lm tune: model pass: 100% 60/60 [" in captured.err and "lm tune: grid: 100% 2/2 [" in captured.err
    expected = min((by_pair[0.5, s] for s in (0.0, 2.0)), key=lambda p: (p.wer, p.cer))
    assert f"best: --lm-weight 0.5 --word-score {expected.word_score:g}" in out


def test_lm_tuning_needs_transcripts(trained: dict[str, Path], tmp_path: Path) -> None:
    from cssl.decode.lm_tuning import tune_lm

    unlabeled = tmp_path / "unlabeled.tsv"
    lines = trained["dev"].read_text().splitlines()
    unlabeled.write_text("\n".join(lines[:3]) + "\n")  # header and two entries, no transcripts
    with pytest.raises(ValueError, match="needs transcripts"):
        tune_lm(Recognizer.from_checkpoint(trained["best"]), unlabeled, trained["lm"])


def test_word_list_alone_tunes_the_word_score_and_beats_greedy(trained: dict[str, Path], tmp_path: Path) -> None:
    from cssl.decode.lm_tuning import LEXICON_WORD_SCORES, tune_lm

    words = tmp_path / "words.txt"
    words.write_text("\n".join(tone_words(30)) + "\n")  # the tone language's whole lexicon
    rec = Recognizer.from_checkpoint(trained["best"])
    tuning = tune_lm(rec, trained["dev"], None, lexicon=words)
    assert [(p.lm_weight, p.word_score) for p in tuning.grid] == [(0.0, s) for s in LEXICON_WORD_SCORES]
    chosen = Recognizer.from_checkpoint(trained["best"], lexicon=str(words), word_score=tuning.word_score)
    assert evaluate_manifest(chosen, trained["dev"]).wer == pytest.approx(tuning.wer)  # one pass = full decoding
    greedy = evaluate_manifest(rec, trained["test"])
    closed = evaluate_manifest(chosen, trained["test"])
    assert closed.wer <= greedy.wer, (closed, greedy)  # only real words: misspellings become words or errors
