"""Decoding and calibration on a model that has really learned: CTC on a noisy tone language.

A letter of the tone language is a note, a word a few notes, a sentence a few words from a
small lexicon, all under white noise; a tiny model fine-tuned from scratch for a couple of
hundred updates transcribes it with some character errors, which is what beam search with
an LM and calibration are for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cssl.config import load_config
from cssl.data.manifest import read_manifest
from cssl.evaluation import evaluate_manifest
from cssl.lm import build_ngram, write_arpa
from cssl.recognizer import Recognizer
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import load_checkpoint, save_checkpoint
from finetune.calibrate import calibrate, collect, word_nll
from finetune.config import FinetuneConfig
from finetune.train import main
from signals import tone_language_corpus, tone_words

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
    # An overconfident copy: the CTC head's logits scaled by a = 3 / T, T the model's own fitted
    # temperature. Both objectives see the logits only through logits / T, so the copy's fitted
    # temperature must be a * T = 3, whether or not the model itself was calibrated.
    original = calibrate(trained["best"], trained["dev"], objective=objective)["temperature"]
    ckpt = load_checkpoint(trained["best"])
    ckpt["model"] = {k: v * (3 / original) if k.startswith("aux.") else v for k, v in ckpt["model"].items()}
    sharp = tmp_path / "sharp.pt"
    save_checkpoint(sharp, ckpt)
    on_dev = calibrate(sharp, trained["dev"], objective=objective)  # fitted and scored on dev
    assert on_dev["temperature"] == pytest.approx(3.0, rel=0.02), (on_dev, original)
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
