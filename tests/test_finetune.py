"""Fine-tuning stage on generated speech: learning, unfreezing at step K, exact resume, init sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchaudio

from cssl.model.wav2vec2 import build_model
from cssl.synth.corpus import synthesize_corpus
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import load_checkpoint
from cssl.utils.config import load_config
from finetune.config import FinetuneConfig
from finetune.train import STUCK_VALIDATIONS, STUCK_WER, initial_model, main, stuck_warning

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "finetune" / "tiny.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    synthesize_corpus(folder, num_utterances=400, seed=3, vocab_size=60, progress=False)
    return folder


def rows(out: Path, split: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


def common(corpus: Path, out: Path) -> list[str]:
    return [f"data.manifest={corpus / 'train.tsv'}", f"data.valid_manifest={corpus / 'dev.tsv'}", f"out_dir={out}",
            "data.num_workers=0", "mixed_precision=no", "freeze.feature_encoder=false", "optim.lr=0.001",
            "early_stop.patience=100"]


@pytest.mark.slow
def test_short_finetune_from_scratch_lowers_dev_cer(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    best = main(load_config(FinetuneConfig, TINY, [*common(corpus, out), "optim.max_steps=100", "valid_every=20",
                                                   "freeze.encoder_steps=0", "log_every=50"]))
    valid = rows(out, "valid")
    assert min(r["cer"] for r in valid[1:]) < valid[0]["cer"] - 0.1, valid
    ckpt = load_checkpoint(best)
    assert ckpt["kind"] == "finetune" and ckpt["vocab"]["symbols"][0] == "<blank>"


def test_unfreezes_at_step_k_and_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    args = [*common(corpus, tmp_path), "optim.max_steps=6", "freeze.encoder_steps=3", "log_every=1",
            "valid_every=100", "save_every=100"]
    full, part = tmp_path / "full", tmp_path / "part"
    main(load_config(FinetuneConfig, TINY, [*args, f"out_dir={full}", "optim.max_steps=3"]))
    after_warmup = load_checkpoint(full / "last.pt")["model"]
    main(load_config(FinetuneConfig, TINY, [*args, f"out_dir={full}", "resume=auto"]))
    end = load_checkpoint(full / "last.pt")["model"]
    key = "encoder.transformer.layers.0.attention.q_proj.weight"
    assert not torch.equal(after_warmup[key], end[key])  # the encoder trains after step K
    main(load_config(FinetuneConfig, TINY, [*args, f"out_dir={part}"]))
    assert [r["ctc"] for r in rows(part, "train")] == [r["ctc"] for r in rows(full, "train")]


def test_average_of_the_best_validations_is_scored_and_used_when_no_worse(corpus: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    result = main(load_config(FinetuneConfig, TINY, [*common(corpus, out), "optim.max_steps=8", "valid_every=2",
                                                     "freeze.encoder_steps=0", "average_best=3", "calibrate=false"]))
    valid = sorted(rows(out, "valid"), key=lambda r: (r["wer"], r["cer"], -r["step"]))
    kept = [r["step"] for r in valid[:3]]
    assert sorted(p.name for p in (out / "nbest").iterdir()) == sorted(f"model_{s}.pt" for s in kept)
    models = [load_checkpoint(out / "nbest" / f"model_{s}.pt")["model"] for s in kept]
    mean = {k: torch.stack([m[k] for m in models]).mean(dim=0) for k in models[0] if models[0][k].is_floating_point()}
    log = capsys.readouterr().out
    assert f"average of the 3 best models (updates {', '.join(map(str, kept))})" in log
    if result.name == "averaged.pt":
        averaged = load_checkpoint(result)["model"]
        assert all(torch.allclose(averaged[k], v, atol=1e-6) for k, v in mean.items())
    else:
        assert result.name == "best.pt" and not (out / "averaged.pt").exists() and "best.pt kept" in log


def test_average_of_identical_models_scores_alike_and_is_the_result(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"  # lr 1e-30: every validation sees the initial model (to the last bit but zeros)
    result = main(load_config(FinetuneConfig, TINY, [*common(corpus, out), "optim.max_steps=4", "valid_every=1",
                                                     "optim.lr=1e-30", "average_best=2", "calibrate=false"]))
    assert result == out / "averaged.pt"
    averaged, best = load_checkpoint(result)["model"], load_checkpoint(out / "best.pt")["model"]
    assert all(torch.allclose(averaged[k], v) for k, v in best.items())


def test_head_only_warmup_leaves_encoder_unchanged(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "warm"
    args = [*common(corpus, out), "optim.max_steps=3", "freeze.encoder_steps=5", "valid_every=100", "save_every=100"]
    cfg = load_config(FinetuneConfig, TINY, args)
    torch.manual_seed(cfg.seed)
    main(cfg)
    trained = load_checkpoint(out / "last.pt")
    from cssl.train.runtime import seed_everything

    seed_everything(cfg.seed)
    fresh, _, _ = initial_model(load_config(FinetuneConfig, TINY, args), Vocabulary(tuple(trained["vocab"]["symbols"])))
    for name, value in fresh.state_dict().items():
        if not name.startswith("aux."):
            assert torch.equal(value, trained["model"][name]), name
    assert not torch.equal(fresh.state_dict()["aux.weight"], trained["model"]["aux.weight"])


def test_init_from_a_torchaudio_state_dict(tmp_path: Path) -> None:
    from tests.test_model import CONV, small

    ref = torchaudio.models.wav2vec2_model(
        extractor_mode="group_norm", extractor_conv_layer_config=list(CONV), extractor_conv_bias=False,
        encoder_embed_dim=64, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4,
        encoder_num_layers=2, encoder_num_heads=4, encoder_attention_dropout=0.0, encoder_ff_interm_features=128,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=False, encoder_layer_drop=0.0,
        aux_num_out=32)
    path = tmp_path / "ta.pt"
    torch.save(ref.state_dict(), path)
    cfg = FinetuneConfig(model=small(), init=str(path))
    model, _, source = initial_model(cfg, Vocabulary.build(["abc"]))
    assert "state dict" in source
    assert torch.equal(model.state_dict()["encoder.transformer.layers.1.feed_forward.output_dense.weight"],
                       ref.state_dict()["encoder.transformer.layers.1.feed_forward.output_dense.weight"])
    assert model.aux.out_features == 6  # a new head for our vocabulary

    cfg.reinit_layers = 1
    torch.manual_seed(7)
    reinit, _, source = initial_model(cfg, Vocabulary.build(["abc"]))
    assert "top 1 Transformer layer(s) re-initialized" in source
    torch.manual_seed(7)
    build_model(small(), vocab_size=6)  # the model the checkpoint is loaded into
    fresh = build_model(small(), vocab_size=6)  # the second draw: where the re-initialized layer comes from
    got, ref_state, new = reinit.state_dict(), ref.state_dict(), fresh.state_dict()
    for key in got:
        if key.startswith("encoder.transformer.layers.1."):
            assert torch.equal(got[key], new[key]), key
            if got[key].dim() == 2:  # random matrices (norms start at ones and zeros in both)
                assert not torch.equal(got[key], ref_state[key]), key
        elif key.startswith("encoder.") or key.startswith("feature_extractor."):
            assert torch.equal(got[key], ref_state[key]), key
    cfg.reinit_layers = 3
    with pytest.raises(ValueError, match="reinit_layers=3: the model has 2 Transformer layers"):
        initial_model(cfg, Vocabulary.build(["abc"]))


@pytest.mark.slow
def test_calibrate_stores_temperature_and_draws_reliability(corpus: Path, tmp_path: Path) -> None:
    import math

    from cssl.score.temperature import calibrate

    out = tmp_path / "cal"
    best = main(load_config(FinetuneConfig, TINY, [*common(corpus, out), "optim.max_steps=60", "valid_every=30",
                                                   "freeze.encoder_steps=0"]))
    figures = calibrate(best, corpus / "dev.tsv")  # report on the fitting set: the NLL it fits cannot get worse
    assert load_checkpoint(best)["temperature"] == figures["temperature"]
    assert 0.25 <= figures["temperature"] <= 8.0
    assert figures["word_nll_after"] <= figures["word_nll_before"] + 1e-4  # default objective: word NLL
    ctc = calibrate(best, corpus / "dev.tsv", objective="ctc")
    assert ctc["nll_after"] <= ctc["nll_before"] + 1e-4
    assert figures.pop("stored_in") == str(best)  # a cssl checkpoint keeps its own temperature
    assert all(math.isfinite(v) for v in figures.values())
    assert (out / "best_reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_early_stopping_waits_for_min_steps() -> None:
    import math

    from finetune.config import FinetuneConfig
    from finetune.train import _early_stop

    class Quiet:
        def message(self, text: str) -> None:
            pass

    cfg = FinetuneConfig()
    cfg.early_stop.patience, cfg.early_stop.min_steps = 2, 300
    state = {"best_wer": math.inf, "bad": 0}
    # An all-blank plateau: WER and CER stay at 1 from the first validation on.
    decisions = [_early_stop(cfg, state, step, 1.0, 1.0, Quiet()) for step in (50, 100, 150, 200, 250, 300)]
    assert decisions == [False, False, False, False, False, True]  # patience ran out at 150, min_steps held it
    cfg.early_stop.min_steps = 0
    state = {"best_wer": math.inf, "bad": 0}
    assert [_early_stop(cfg, state, step, 1.0, 1.0, Quiet()) for step in (50, 100, 150)] == [False, False, True]


def test_early_stopping_by_cer_follows_cer_where_wer_sits_above_one() -> None:
    import math

    from finetune.config import FinetuneConfig
    from finetune.train import _early_stop

    class Quiet:
        def message(self, text: str) -> None:
            pass

    # A minute of labels: greedy WER goes above 1 (insertions) while CER falls.
    curve = [(50, 1.0, 0.92), (100, 1.05, 0.80), (150, 1.06, 0.70), (200, 1.02, 0.74), (250, 1.10, 0.69)]
    by = {}
    for metric in ("wer", "cer"):
        cfg = FinetuneConfig()
        cfg.early_stop.metric, cfg.early_stop.patience = metric, 2
        state = {"best_wer": math.inf, "bad": 0}
        stops, best = [], []
        for step, wer, cer in curve:
            stops.append(_early_stop(cfg, state, step, wer, cer, Quiet()))
            if state["bad"] == 0:
                best.append(step)
        by[metric] = (stops, best, (state["best_wer"], state["best_cer"]))
    assert by["wer"] == ([False, False, True, True, True], [50], (1.0, 0.92))  # the all-blank start wins on WER
    assert by["cer"] == ([False, False, False, False, False], [50, 100, 150, 250], (1.10, 0.69))


def test_the_validation_checkpoints_rank_by_the_chosen_metric(tmp_path: Path) -> None:
    from cssl.train.nbest import NBest

    offered = [(10, 1.0, 0.9), (20, 1.1, 0.6), (30, 1.2, 0.7)]
    ranks = {}
    for metric in ("wer", "cer"):
        nbest = NBest(tmp_path / metric, keep=3, metric=metric)
        for step, wer, cer in offered:
            nbest.offer(step, wer, cer, None)
        ranks[metric] = [r.step for r in nbest.ranked]
    assert ranks == {"wer": [10, 20, 30], "cer": [20, 30, 10]}
    with pytest.raises(ValueError, match="metric"):
        NBest(tmp_path, keep=1, metric="loss")


def test_stuck_warning_only_for_a_run_flat_at_the_blank_plateau():
    """Silent while the run is early, while dev WER is below the plateau, or while dev keeps improving."""
    n = STUCK_VALIDATIONS
    assert stuck_warning(400, 1600, STUCK_WER, n, n) is not None  # a quarter through, flat
    assert stuck_warning(399, 1600, 1.0, 30, 30) is None  # before a quarter of the run
    assert stuck_warning(1000, 1600, STUCK_WER - 0.01, 30, 30) is None  # words come out
    assert stuck_warning(1000, 1600, 1.0, n - 1, 30) is None  # a better model lately
    assert stuck_warning(1000, 1600, 1.0, 30, n - 1) is None  # no better model, but CER still falling lately
    assert stuck_warning(1000, 1600, 0.64, 30, 30, "cer") is None  # ranked by CER: letters come out, WER aside
    assert "best dev CER 1.000" in stuck_warning(1000, 1600, 1.0, 30, 30, "cer")
    message = stuck_warning(1000, 4000, 1.0, 7, 6)
    assert "update 1000 of 4000" in message and "7 validations" in message and "CER in 6" in message
    assert "warmup_steps" in message


def test_stuck_warning_stays_silent_while_dev_cer_falls_under_a_flat_wer() -> None:
    import math

    from finetune.config import FinetuneConfig
    from finetune.train import _early_stop

    class Quiet:
        def message(self, text: str) -> None:
            pass

    # A pretrained model on a minute of labels (measured): WER hovers near 1 from update 650 on while
    # CER keeps falling; then, in the made-up tail, CER stops falling too.
    curve = [(650, 0.981, 0.865), (700, 0.993, 0.880), (750, 0.995, 0.774), (800, 0.993, 0.807),
             (850, 0.984, 0.769), (900, 0.990, 0.752), (950, 0.993, 0.732), (1000, 1.003, 0.696),
             (1050, 1.023, 0.687), (1100, 1.0, 0.70), (1150, 1.0, 0.71), (1200, 1.0, 0.69), (1250, 1.0, 0.70),
             (1300, 1.0, 0.72)]
    cfg = FinetuneConfig()
    cfg.early_stop.patience = 100
    state = {"best_wer": math.inf, "best_cer": math.inf, "bad": 0, "lowest_cer": math.inf, "cer_flat": 0}
    warned = []
    for step, wer, cer in curve:
        _early_stop(cfg, state, step, wer, cer, Quiet())
        if stuck_warning(step, 4000, state["best_wer"], state["bad"], state["cer_flat"]):
            warned.append(step)
    assert state["best_wer"] == 0.981 and state["lowest_cer"] == 0.687
    assert warned == [1300]  # five validations after the lowest CER (1050), not while CER fell


def test_specaugment_masks_as_many_frames_as_the_towers_give_for_audio_shorter_than_one_window() -> None:
    from cssl.data.dataset import Batch
    from cssl.model import ModelConfig
    from finetune.train import _specaugment

    cfg = load_config(FinetuneConfig, None, ["specaugment.time_prob=1.0", "specaugment.time_span=1"])
    model = build_model(load_config(ModelConfig, ROOT / "configs" / "model" / "tiny.yaml"), vocab_size=5)
    field = model.feature_extractor.receptive_field
    for width in (field // 2, field, 3 * field):  # shorter than one window: padded to one, one frame
        batch = Batch(torch.randn(2, width), torch.tensor([width, width // 2]), [0, 1])
        time_mask, _ = _specaugment(cfg, model, batch, step=0)
        frames = model.feature_extractor(batch.waves)[0].shape[1]
        assert time_mask.shape == (2, frames), (width, time_mask.shape, frames)
