"""The fine-tuning stage: a CTC head on the towers, a freezing schedule, dev WER, early stopping.

What is the stage's own (:class:`FineTuning`): each batch's loss is the summed CTC loss
of its utterances (those whose transcript needs more frames than their audio has are
left out and counted); the update is normalised by the number of utterances of the
whole update across processes. SpecAugment masks are seeded per utterance. The dev set
is decoded greedily every ``valid_every`` updates; ``best.pt`` keeps the best dev WER
and training stops after ``early_stop.patience`` validations without improvement. At
the end the temperature is fitted on dev. The update loop is :func:`cssl.train.loop.train`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from accelerate.utils import gather_object

from cssl.convert.loading import load_model
from cssl.data.dataset import Batch, build_loader
from cssl.data.manifest import read_manifest
from cssl.data.rejects import Rejects
from cssl.kernels.counter_rng import STREAM_CHANNELS
from cssl.model import ModelConfig, Wav2Vec2Model, build_model
from cssl.model.ctc import ctc_loss, greedy_decode
from cssl.model.masking import batch_span_mask
from cssl.score.metrics import error_rates
from cssl.text.vocab import Vocabulary, transcript_notes
from cssl.train.batch_stream import BatchStream
from cssl.train.health import Health
from cssl.train.loop import Run, Stage, open_run, releasing_out_dir, resume_run, save_run, train
from cssl.train.nbest import NBest, dev_rank
from cssl.train.plots import plot_finetuning
from cssl.train.progress import Progress
from cssl.train.runtime import build_optimizer, gather_rejects
from cssl.utils.config import ConfigError
from cssl.utils.errors import DataError
from cssl.utils.seeding import mix_seed
from finetune.config import FinetuneConfig
from finetune.freezing import FreezingRule, set_frozen_eval


class FineTuning(Stage):
    """The fine-tuning stage's parts of the update loop."""

    kind = "finetune"
    sums = ("loss", "count", "infeasible", "audio_s")

    def __init__(self, cfg: FinetuneConfig, accel, vocab: Vocabulary, valid, health: Health, out_dir: Path) -> None:
        self.cfg, self.accel, self.vocab, self.valid, self.health, self.out_dir = cfg, accel, vocab, valid, health, out_dir
        self.validates = valid is not None
        self.rule = FreezingRule(cfg.freeze.feature_encoder, cfg.freeze.context_layers, cfg.freeze.encoder_steps)
        # The best model's dev scores, validations since it, and the lowest dev CER of any validation with
        # the validations since it fell (a run can rank no better by WER while its CER still falls).
        self.best = {"best_wer": math.inf, "best_cer": math.inf, "bad": 0, "lowest_cer": math.inf, "cer_flat": 0}
        self.nbest = NBest(out_dir / "nbest", cfg.average_best, cfg.early_stop.metric)
        self.dev_rejects = Rejects()

    def start_update(self, model: Wav2Vec2Model, step: int, progress: Progress) -> None:
        if step == self.rule.head_only_steps and step > 0:
            progress.message(f"step {step}: unfreezing the context tower (head-only warm-up over)")
        frozen = self.rule.apply(model, step)
        model.train()
        set_frozen_eval(model, frozen)

    def forward(self, model, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        time_mask, channel_mask = _specaugment(self.cfg, self.accel.unwrap_model(model), batch, step)
        logits, frames = model(batch.waves, batch.lengths, time_mask, channel_mask)
        out = ctc_loss(logits, frames, batch.targets, batch.target_lengths)
        return out.loss, {"loss": float(out.loss.detach()), "count": out.count,
                          "infeasible": float(out.infeasible.sum()), "audio_s": float(batch.lengths.sum()) / 16000}

    def log(self, step: int, totals: dict[str, float], lr: float, grad_norm: float):
        return {"ctc": totals["loss"] / max(totals["count"], 1.0), "too_long": totals["infeasible"], "lr": lr,
                "grad_norm": grad_norm}, []

    def validate(self, model, step: int) -> dict[str, float]:
        metrics = evaluate(self.accel, model, self.valid, self.vocab, self.dev_rejects, self.cfg.data.valid_manifest)
        self.dev_rejects = gather_rejects(self.accel, self.dev_rejects)  # every process's share of the dev set
        if self.cfg.average_best > 1:
            unwrapped = self.accel.unwrap_model(model)
            self.nbest.offer(step, metrics["wer"], metrics["cer"],
                             unwrapped.state_dict if self.accel.is_main_process else None)
        return metrics

    def judge(self, step: int, metrics: dict[str, float], progress: Progress) -> tuple[bool, bool]:
        if metrics["utterances"] < len(self.valid.dataset) and "dev_partial" not in self.health.warned:
            self.health.warned.add("dev_partial")
            progress.message(f"warning: dev WER covers {int(metrics['utterances'])} of {len(self.valid.dataset)} "
                             f"utterances ({self.dev_rejects.summary()}); see {self.out_dir / 'dev_rejects.tsv'}")
            if self.accel.is_main_process:
                self.dev_rejects.write(self.out_dir / "dev_rejects.tsv")
        stop = _early_stop(self.cfg, self.best, step, metrics["wer"], metrics["cer"], progress)
        metric = self.cfg.early_stop.metric  # _early_stop has set the best model's WER and CER
        warning = stuck_warning(step, self.cfg.optim.max_steps, self.best[f"best_{metric}"], self.best["bad"],
                                self.best["cer_flat"], metric)
        if warning and "blank_plateau" not in self.health.warned:
            self.health.warned.add("blank_plateau")
            progress.message(f"warning: {warning}")
        return self.best["bad"] == 0, stop

    def checkpoint_extra(self) -> dict:
        return {"vocab": self.vocab.to_dict()}

    def state_dict(self) -> dict:
        return {**self.best, "nbest": self.nbest.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.nbest.load_state_dict(state.pop("nbest", []))
        self.best.update(state)

    def after_save(self, out_dir: Path) -> None:
        if self.valid is not None:
            plot_finetuning({out_dir.name: out_dir}, out_dir / "finetune_curves.png")


@releasing_out_dir
def main(cfg: FinetuneConfig) -> Path:
    """Fine-tunes (then calibrates on dev); returns the path of the best checkpoint (by dev WER) or the last one."""
    run = open_run(cfg, find_unused=cfg.freeze.encoder_steps > 0)
    accel = run.accel
    train_manifest = read_manifest(cfg.data.manifest)
    if not train_manifest.labeled:
        raise DataError(f"{cfg.data.manifest}: fine-tuning needs a transcript for every entry")
    texts = [e.text or "" for e in train_manifest]
    vocab = Vocabulary.load(cfg.vocab) if cfg.vocab else Vocabulary.build(texts)
    run.notes += transcript_notes(texts, vocab, "training transcripts")
    model, cfg.model, source = initial_model(cfg, vocab)
    frozen = FreezingRule(cfg.freeze.feature_encoder, cfg.freeze.context_layers).apply(model, 0)
    o = cfg.optim
    optimizer = build_optimizer(model.parameters(), o.lr, o.betas, o.eps, o.weight_decay, o.fused)
    loader = build_loader(cfg.data, train_manifest, vocab, train=True, seed=cfg.seed,
                          num_replicas=accel.num_processes, rank=accel.process_index)
    valid = None
    if cfg.data.valid_manifest:
        valid = build_loader(cfg.data, cfg.data.valid_manifest, vocab, train=False, seed=cfg.seed,
                             num_replicas=accel.num_processes, rank=accel.process_index, filter_lengths=False)
        run.notes += transcript_notes([e.text or "" for e in valid.dataset.manifest], vocab, "dev transcripts")
    stream, health = BatchStream(loader, cfg.data.manifest, run.rejects_path), Health(cfg.max_nonfinite)
    stage = FineTuning(cfg, accel, vocab, valid, health, run.out_dir)
    resume_run(run, stage, model, optimizer, stream, health)
    train(run, stage, model, optimizer, stream, health,
          f"fine-tuning from {source}, {len(loader.dataset)} utterances, vocabulary of {len(vocab)}, "
          f"frozen: {', '.join(frozen) or 'none'}"
          + (f", head only for the first {cfg.freeze.encoder_steps} updates" if cfg.freeze.encoder_steps else ""))
    progress, best = run.progress, run.out_dir / "best.pt"
    if valid is None or not best.is_file():
        save_run(run, stage, stream, health, best)
        why = "no dev set" if valid is None else "stopped before the first validation"
        progress.message(f"done at step {run.step}; {why}, so best.pt is the last model; "
                         f"data: {stream.rejects.summary()}")
    else:
        ranked = "CER" if cfg.early_stop.metric == "cer" else "WER"
        progress.message(f"done at step {run.step}; best dev {ranked}: WER {stage.best['best_wer']:.4f}, CER "
                         f"{stage.best.get('best_cer', math.inf):.4f} (best.pt); data: {stream.rejects.summary()}")
        if len(stage.nbest) > 1:
            best = average_best(run, stage, stream, health, best)
    accel.wait_for_everyone()
    if cfg.calibrate and valid is not None and accel.is_main_process:
        from cssl.score.temperature import calibrate, calibration_warnings

        fig = calibrate(best, cfg.data.valid_manifest, device=accel.device, objective=cfg.calibration_objective)
        progress.message(f"calibration on dev ({cfg.calibration_objective} NLL): temperature {fig['temperature']:.3f} "
                         f"stored in {best}; word NLL {fig['word_nll_before']:.3f} -> {fig['word_nll_after']:.3f}; "
                         f"CTC NLL {fig['nll_before']:.3f} -> {fig['nll_after']:.3f}; word ECE "
                         f"{fig['ece_before']:.4f} -> {fig['ece_after']:.4f}")
        for warning in calibration_warnings(fig):
            progress.message(f"warning: {warning}")
    accel.wait_for_everyone()
    progress.close()
    return best


def average_best(run: Run, stage: FineTuning, stream: BatchStream, health: Health, best: Path) -> Path:
    """Averages the n-best models into ``averaged.pt``, scores it on dev and returns it when it is no
    worse than ``best`` (dev WER, then CER); else ``best``."""
    accel, progress = run.accel, run.progress
    accel.wait_for_everyone()  # every kept model is on disk
    accel.unwrap_model(run.model).load_state_dict(stage.nbest.average())
    fig = evaluate(accel, run.model, stage.valid, stage.vocab, name=str(stage.cfg.data.valid_manifest))
    steps = ", ".join(str(r.step) for r in stage.nbest.ranked)
    wer, cer = stage.best["best_wer"], stage.best.get("best_cer", math.inf)  # best.pt's figures
    metric = stage.cfg.early_stop.metric
    worse = dev_rank(fig["wer"], fig["cer"], metric) > dev_rank(wer, cer, metric)
    if worse:
        result, verdict, outcome = best, "worse than best.pt", "best.pt kept"
    else:
        result = run.out_dir / "averaged.pt"
        save_run(run, stage, stream, health, result)
        verdict, outcome = "against best.pt's", f"{result} is the result"
    progress.message(f"average of the {len(stage.nbest)} best models (updates {steps}): dev WER {fig['wer']:.4f} "
                     f"CER {fig['cer']:.4f}, {verdict} {wer:.4f} / {cer:.4f}: {outcome}")
    return result


def initial_model(cfg: FinetuneConfig, vocab: Vocabulary) -> tuple[Wav2Vec2Model, ModelConfig, str]:
    """Towers from ``init`` (a checkpoint of ours or a torchaudio state dict) or random, and a fresh CTC head."""
    model_cfg, source, towers = cfg.model, "scratch", None
    if cfg.init:
        loaded = load_model(cfg.init, cfg.model)
        model_cfg, source = loaded.config, loaded.source
        towers = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("aux.")}
    model = build_model(model_cfg, vocab_size=len(vocab))
    if towers is not None:
        model.load_state_dict(towers, strict=False)  # all but the head, which is new: our vocabulary
    if cfg.reinit_layers and towers is not None:
        reinit_top_layers(model, cfg.reinit_layers, build_model(model_cfg, vocab_size=len(vocab)))
        source += f", top {cfg.reinit_layers} Transformer layer(s) re-initialized"
    return model, model_cfg, source


def reinit_top_layers(model: Wav2Vec2Model, count: int, fresh: Wav2Vec2Model) -> None:
    """Gives the top ``count`` Transformer layers of ``model`` the initial weights of ``fresh``."""
    layers = model.encoder.transformer.layers
    if not 0 <= count <= len(layers):
        raise ConfigError(f"reinit_layers={count}: the model has {len(layers)} Transformer layers")
    for i in range(len(layers) - count, len(layers)):
        layers[i].load_state_dict(fresh.encoder.transformer.layers[i].state_dict())


def _specaugment(cfg: FinetuneConfig, model: Wav2Vec2Model, batch, step: int):
    """Time and channel masks on the batch's device, seeded per utterance like pretraining's."""
    s = cfg.specaugment
    seeds = torch.tensor([mix_seed(cfg.seed, step, idx) for idx in batch.indices], device=batch.waves.device)
    frames = model.feature_extractor.output_lengths(batch.lengths)  # (B,)
    width = model.feature_extractor.num_frames(batch.waves.shape[1])
    time_mask = batch_span_mask(frames, width, s.time_prob, s.time_span, 0, seeds) if s.time_prob > 0 else None
    channel_mask = None
    if s.channel_prob > 0:
        dim = model.encoder.embed_dim
        channel_mask = batch_span_mask(torch.full_like(frames, dim), dim, s.channel_prob, s.channel_span, 0, seeds,
                                       stream=STREAM_CHANNELS)
    return time_mask, channel_mask


@torch.no_grad()
def evaluate(accel, model, loader, vocab: Vocabulary, rejects: Rejects | None = None,
             name: str = "dev") -> dict[str, float]:
    """Greedy-decoded WER and CER over a loader (all processes' utterances).

    Unusable utterances are left out and added to ``rejects``; ``utterances`` says how
    many were scored. Scoring none raises :class:`DataError`.
    """
    model.eval()
    refs, hyps = [], []
    manifest = loader.dataset.manifest
    loader.set_epoch(0)
    for batch in loader:
        if rejects is not None:
            rejects.extend(batch.rejected)
        if not len(batch):
            continue
        batch = batch.to(accel.device)
        with accel.autocast():
            logits, frames = model(batch.waves, batch.lengths)
        for idx, ids in zip(batch.indices, greedy_decode(logits.float(), frames, vocab.blank)):
            refs.append(vocab.decode(vocab.encode(manifest[idx].text or "")))
            hyps.append(vocab.decode(ids))
    if accel.num_processes > 1:
        refs = [r for part in gather_object([refs]) for r in part]
        hyps = [h for part in gather_object([hyps]) for h in part]
    if not refs:
        raise DataError(f"{name}: none of its {len(manifest)} utterances could be scored "
                        f"({rejects.summary() if rejects is not None else 'all unusable'}); fix the dev manifest")
    rates = error_rates(refs, hyps)
    model.train()
    return {"wer": rates.wer, "cer": rates.cer, "utterances": float(len(refs))}


STUCK_WER = 0.98
"""A best dev WER this high means the model still writes (almost) nothing but blanks."""
STUCK_VALIDATIONS = 5
"""Validations in a row without a better dev model, and without a lower dev CER, before a stuck run is reported."""


def stuck_warning(step: int, max_steps: int, best: float, bad: int, cer_flat: int, metric: str = "wer") -> str | None:
    """What to say when a run a quarter through still sits at CTC's all-blank start and its dev CER
    has stopped moving too (a pretrained model leaving the plateau late keeps lowering CER); else None.
    ``best``: the best dev score of ``metric`` (ranked by CER, a model above WER 1 that writes letters is
    not stuck; its CER tells); ``bad``: validations since the best model; ``cer_flat``: validations since
    the lowest dev CER of any validation."""
    if best < STUCK_WER or bad < STUCK_VALIDATIONS or cer_flat < STUCK_VALIDATIONS or 4 * step < max_steps:
        return None
    return (f"best dev {metric.upper()} {best:.3f} at update {step} of {max_steps}, no better model in {bad} "
            f"validations and no lower dev CER in {cer_flat}: the model looks stuck at CTC's all-blank start. Runs "
            "like it rarely recover; restart with a longer warm-up (optim.schedule.warmup_steps) or a lower optim.lr")


def _early_stop(cfg: FinetuneConfig, state: dict, step: int, wer: float, cer: float, progress: Progress) -> bool:
    """Better: a lower dev score (``early_stop.metric``), or the same with a lower other one (the all-blank
    plateau at WER 1 moves in CER). ``state`` keeps the best model's WER and CER."""
    if cer < state.get("lowest_cer", math.inf):
        state["lowest_cer"], state["cer_flat"] = cer, 0
    else:
        state["cer_flat"] = state.get("cer_flat", 0) + 1
    metric = cfg.early_stop.metric
    first, second = dev_rank(wer, cer, metric)
    best_first, best_second = dev_rank(state["best_wer"], state.get("best_cer", math.inf), metric)
    if first < best_first - cfg.early_stop.min_delta or (first <= best_first and second < best_second):
        state["best_wer"], state["best_cer"], state["bad"] = wer, cer, 0
        return False
    state["bad"] += 1
    if first > best_first * 1.1:
        progress.message(f"dev {metric.upper()} {first:.4f} is worse than the best {best_first:.4f}: training is degrading")
    if state["bad"] >= cfg.early_stop.patience and step >= cfg.early_stop.min_steps:
        progress.message(f"early stop: no better dev {metric.upper()} in {state['bad']} validations "
                         f"(best {best_first:.4f}); best.pt holds that model")
        return True
    return False
