"""The fine-tuning loop: CTC head on the towers, freezing schedule, dev WER, early stopping.

Each update sums the CTC losses of its batches (utterances whose transcript needs more
frames than their audio has are left out and counted), normalises gradients by the
number of utterances of the whole update across processes, clips and steps. The dev
set is decoded greedily every ``valid_every`` updates; ``best.pt`` keeps the best dev
WER and training stops after ``early_stop.patience`` validations without improvement.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from accelerate.utils import gather_object

from cssl.config import ConfigError
from cssl.data.dataset import build_loader
from cssl.data.manifest import read_manifest
from cssl.data.rejects import Rejects
from cssl.errors import DataError
from cssl.loading import load_model
from cssl.metrics import error_rates
from cssl.model import ModelConfig, Wav2Vec2Model, build_model
from cssl.model.ctc import ctc_loss, greedy_decode
from cssl.model.freezing import apply_freezing, set_frozen_eval
from cssl.model.masking import batch_span_mask, generators
from cssl.seeding import mix_seed
from cssl.text.vocab import Vocabulary, transcript_notes
from cssl.train.health import Health
from cssl.train.plots import plot_finetuning
from cssl.train.progress import Progress
from cssl.train.runtime import (build_optimizer, describe_runtime, global_sum, guarded_update, local_accumulation,
                                make_accelerator, seed_everything, set_lr, set_threads, stop_reason)
from cssl.train.state import find_resume, prepare_out_dir, restore_training, save_training
from cssl.train.stream import BatchStream
from finetune.config import FinetuneConfig

SUMS = ("loss", "count", "infeasible", "audio_s")


def main(cfg: FinetuneConfig) -> Path:
    """Fine-tunes (then calibrates on dev); returns the path of the best checkpoint (by dev WER) or the last one."""
    set_threads(cfg.threads)
    accel = make_accelerator(cfg.mixed_precision, find_unused=cfg.freeze.encoder_steps > 0)
    seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    notes = prepare_out_dir(out_dir, accel.is_main_process)
    accumulation = local_accumulation(cfg.optim.accumulation, accel.num_processes)
    train_manifest = read_manifest(cfg.data.manifest)
    if not train_manifest.labeled:
        raise DataError(f"{cfg.data.manifest}: fine-tuning needs a transcript for every entry")
    texts = [e.text or "" for e in train_manifest]
    vocab = Vocabulary.load(cfg.vocab) if cfg.vocab else Vocabulary.build(texts)
    notes += transcript_notes(texts, vocab, "training transcripts")
    model, cfg.model, source = initial_model(cfg, vocab)
    frozen = apply_freezing(model, cfg.freeze.feature_encoder, cfg.freeze.context_layers, whole_encoder=False)
    o = cfg.optim
    optimizer = build_optimizer(model.parameters(), o.lr, o.betas, o.eps, o.weight_decay)
    loader = build_loader(cfg.data, train_manifest, vocab, train=True, seed=cfg.seed,
                          num_replicas=accel.num_processes, rank=accel.process_index)
    valid = None
    if cfg.data.valid_manifest:
        valid = build_loader(cfg.data, cfg.data.valid_manifest, vocab, train=False, seed=cfg.seed,
                             num_replicas=accel.num_processes, rank=accel.process_index, filter_lengths=False)
        notes += transcript_notes([e.text or "" for e in valid.dataset.manifest], vocab, "dev transcripts")
    stream = BatchStream(loader, cfg.data.manifest, out_dir / ("rejects.tsv" if accel.is_main_process
                                                                else f"rejects.rank{accel.process_index}.tsv"))
    health, state = Health(cfg.max_nonfinite), {"step": 0, "best_wer": math.inf, "bad": 0}
    found = find_resume(cfg.resume, out_dir)
    if found:
        resume, ckpt, skipped = found
        notes += skipped
        restore_training(ckpt, "finetune", "pass it as init= instead", model, optimizer, stream, health,
                         accel.process_index)
        state = {"step": int(ckpt["step"]), **ckpt["state"]}
        notes.append(f"resumed from {resume} at step {state['step']}")
    model, optimizer = accel.prepare(model, optimizer)
    progress = Progress(out_dir, o.max_steps, accel.is_main_process, start_step=state["step"])
    for note in notes:
        progress.message(note)
    progress.message(f"fine-tuning from {source}: {describe_runtime(accel)}; "
                     f"{len(loader.dataset)} utterances; vocabulary of {len(vocab)}; frozen: {', '.join(frozen) or 'none'}; "
                     f"{o.accumulation} batch(es) per update"
                     + (f"; head only for the first {cfg.freeze.encoder_steps} updates" if cfg.freeze.encoder_steps else ""))
    dev_rejects = Rejects()
    started, stop = time.monotonic(), False
    while state["step"] < o.max_steps and not stop:
        step = state["step"]
        if step == cfg.freeze.encoder_steps and step > 0:
            progress.message(f"step {step}: unfreezing the context tower (head-only warm-up over)")
        lr = set_lr(optimizer, o.lr, step, o.max_steps, o.schedule)
        sums = _update(cfg, accel, model, stream, frozen, step, accumulation)
        totals = dict(zip(SUMS, global_sum(accel, [sums[k] for k in SUMS])))
        count = max(totals["count"], 1.0)
        grad_norm = guarded_update(accel, model, optimizer, health, totals["loss"], totals["count"], o.grad_clip, step)
        if math.isnan(grad_norm):
            progress.message(f"step {step}: non-finite loss, update skipped ({health.nonfinite_total} so far)")
        state["step"] = step = step + 1
        progress.add_audio(totals["audio_s"])
        if step % cfg.log_every == 0 or step == o.max_steps:
            progress.log(step, {"ctc": totals["loss"] / count, "too_long": totals["infeasible"], "lr": lr,
                                "grad_norm": grad_norm})
        if valid is not None and (step % cfg.valid_every == 0 or step == o.max_steps):
            metrics = evaluate(accel, model, valid, vocab, dev_rejects, cfg.data.valid_manifest)
            progress.log(step, metrics, split="valid")
            if metrics["utterances"] < len(valid.dataset) and "dev_partial" not in health.warned:
                health.warned.add("dev_partial")
                progress.message(f"warning: dev WER covers {int(metrics['utterances'])} of {len(valid.dataset)} "
                                 f"utterances ({dev_rejects.summary()}); see {out_dir / 'dev_rejects.tsv'}")
                if accel.is_main_process:
                    dev_rejects.write(out_dir / "dev_rejects.tsv")
            stop = _early_stop(cfg, state, metrics["wer"], metrics["cer"], progress)
            if state["bad"] == 0:
                _save(cfg, accel, model, optimizer, stream, health, state, vocab, out_dir / "best.pt")
        early = stop_reason(cfg.max_minutes, cfg.stop_after, step, time.monotonic() - started)
        if step % cfg.save_every == 0 or step == o.max_steps or early or stop:
            _save(cfg, accel, model, optimizer, stream, health, state, vocab, out_dir / f"checkpoint_{step}.pt")
            if accel.is_main_process and valid is not None:
                plot_finetuning({out_dir.name: out_dir}, out_dir / "finetune_curves.png")
        stop = stop or bool(early)
    if accel.is_main_process and len(stream.rejects):
        stream.rejects.write(out_dir / "rejects.tsv")
    best = out_dir / "best.pt"
    if valid is None or not best.is_file():
        _save(cfg, accel, model, optimizer, stream, health, state, vocab, best)
        why = "no dev set" if valid is None else "stopped before the first validation"
        progress.message(f"done at step {state['step']}; {why}, so best.pt is the last model; "
                         f"data: {stream.rejects.summary()}")
    else:
        progress.message(f"done at step {state['step']}; best dev WER {state['best_wer']:.4f} (best.pt); "
                         f"data: {stream.rejects.summary()}")
    accel.wait_for_everyone()
    if cfg.calibrate and cfg.data.valid_manifest and accel.is_main_process:
        from cssl.calibrate import calibrate, calibration_warnings

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


def _update(cfg: FinetuneConfig, accel, model, stream: BatchStream, frozen: list[str], step: int,
            n: int) -> dict[str, float]:
    """Forward/backward over this process's ``n`` batches of the update; returns local sums."""
    sums = dict.fromkeys(SUMS, 0.0)
    model.train()
    set_frozen_eval(accel.unwrap_model(model), frozen)
    encoder_grad = step >= cfg.freeze.encoder_steps
    for i in range(n):
        batch = next(stream).to(accel.device)
        time_mask, channel_mask = _specaugment(cfg, accel.unwrap_model(model), batch, step)
        sync = contextlib.nullcontext() if i == n - 1 else accel.no_sync(model)
        with sync, accel.autocast():
            logits, frames = model(batch.waves, batch.lengths, time_mask, channel_mask, encoder_grad)
            out = ctc_loss(logits, frames, batch.targets, batch.target_lengths)
        accel.backward(out.loss)
        sums["loss"] += float(out.loss.detach())
        sums["count"] += out.count
        sums["infeasible"] += float(out.infeasible.sum())
        sums["audio_s"] += float(batch.lengths.sum()) / 16000
    return sums


def _specaugment(cfg: FinetuneConfig, model: Wav2Vec2Model, batch, step: int):
    """Time and channel masks, seeded per utterance like pretraining's."""
    s = cfg.specaugment
    gens = generators([mix_seed(cfg.seed, step, idx) for idx in batch.indices])
    frames = model.feature_extractor.output_lengths(batch.lengths.cpu())
    width = int(model.feature_extractor.output_lengths(torch.tensor([batch.waves.shape[1]]))[0])
    time_mask = batch_span_mask(frames, width, s.time_prob, s.time_span, 0, gens) if s.time_prob > 0 else None
    channel_mask = None
    if s.channel_prob > 0:
        dim = model.encoder.embed_dim
        channel_mask = batch_span_mask(torch.full_like(frames, dim), dim, s.channel_prob, s.channel_span, 0, gens)
    move = lambda m: None if m is None else m.to(batch.waves.device)  # noqa: E731
    return move(time_mask), move(channel_mask)


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


def _early_stop(cfg: FinetuneConfig, state: dict, wer: float, cer: float, progress: Progress) -> bool:
    """Better: a lower dev WER, or the same WER with a lower CER (the all-blank plateau at WER 1 moves in CER)."""
    best_cer = state.get("best_cer", math.inf)
    if wer < state["best_wer"] - cfg.early_stop.min_delta or (wer <= state["best_wer"] and cer < best_cer):
        state["best_wer"], state["best_cer"], state["bad"] = min(wer, state["best_wer"]), cer, 0
        return False
    state["bad"] += 1
    if wer > state["best_wer"] * 1.1:
        progress.message(f"dev WER {wer:.4f} is worse than the best {state['best_wer']:.4f}: training is degrading")
    if state["bad"] >= cfg.early_stop.patience:
        progress.message(f"early stop: no better dev WER in {state['bad']} validations "
                         f"(best {state['best_wer']:.4f}); best.pt holds that model")
        return True
    return False


def _save(cfg, accel, model, optimizer, stream, health, state, vocab: Vocabulary, path: Path) -> None:
    save_training(accel, path, "finetune", cfg, model, optimizer, stream, health, state["step"],
                  vocab=vocab.to_dict(), state={k: state[k] for k in ("best_wer", "best_cer", "bad") if k in state})
