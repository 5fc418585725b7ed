"""The pretraining loop: a thin layer around accelerate.

Each update draws ``accumulation`` batches, sums the losses, normalises gradients by
the number of masked frames of the whole update (all processes), clips and steps.
Masks, distractors and Gumbel noise of an utterance are seeded by (run seed, update,
utterance index): the run is the same on one process or several.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch

from cssl.data.dataset import Batch, build_loader
from cssl.model import build_pretrainer, gumbel_temperature
from cssl.seeding import mix_seed
from cssl.train.checkpoint import latest_checkpoint, load_checkpoint
from cssl.train.health import Health
from cssl.train.progress import Progress
from cssl.train.runtime import (build_optimizer, global_sum, guarded_update, make_accelerator, seed_everything,
                                set_lr, set_threads, stop_reason)
from cssl.train.state import restore_training, save_training
from cssl.train.stream import BatchStream
from pretrain.config import PretrainConfig

METRICS = ("loss", "contrastive", "diversity", "penalty", "count", "correct", "code_ppl", "prob_ppl", "audio_s")


def main(cfg: PretrainConfig) -> Path:
    """Trains, checkpointing as it goes; returns the path of the last checkpoint."""
    set_threads(cfg.threads)
    accel = make_accelerator(cfg.mixed_precision)
    seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    model = build_pretrainer(cfg.model, cfg.loss.num_distractors, cfg.loss.cross_distractors,
                             cfg.loss.logit_temperature)
    o = cfg.optim
    optimizer = build_optimizer(model.parameters(), o.lr, o.betas, o.eps, o.weight_decay)
    loader = build_loader(cfg.data, cfg.data.manifest, train=True, seed=cfg.seed,
                          num_replicas=accel.num_processes, rank=accel.process_index)
    valid = None
    if cfg.data.valid_manifest:
        valid = build_loader(cfg.data, cfg.data.valid_manifest, train=False, seed=cfg.seed,
                             num_replicas=accel.num_processes, rank=accel.process_index)
    stream, health, step = BatchStream(loader), Health(cfg.max_nonfinite), 0
    resume = latest_checkpoint(out_dir) if cfg.resume == "auto" else cfg.resume
    if resume:
        ckpt = restore_training(load_checkpoint(resume), "pretrain", "use it as init= of a stage instead",
                                model, optimizer, stream, health, accel.process_index)
        step = int(ckpt["step"])
    model, optimizer = accel.prepare(model, optimizer)
    progress = Progress(out_dir, o.max_steps, accel.is_main_process, start_step=step)
    progress.message(f"pretraining on {accel.device} x{accel.num_processes} ({accel.mixed_precision}); "
                     f"{len(loader.dataset)} utterances, {loader.dropped} outside the length filters; "
                     f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
                     + (f"; resumed from {resume} at step {step}" if resume else ""))
    started, last = time.monotonic(), None
    while step < o.max_steps:
        lr = set_lr(optimizer, o.lr, step, o.max_steps, o.schedule)
        sums = _update(cfg, accel, model, optimizer, stream, step)
        totals = dict(zip(METRICS, global_sum(accel, [sums[k] for k in METRICS])))
        count = max(totals["count"], 1.0)
        grad_norm = guarded_update(accel, model, optimizer, health, totals["loss"], totals["count"], o.grad_clip, step)
        if math.isnan(grad_norm):
            progress.message(f"step {step}: non-finite loss, update skipped ({health.nonfinite_total} so far)")
        step += 1
        progress.add_audio(totals["audio_s"])
        if step % cfg.log_every == 0 or step == o.max_steps:
            metrics = _metrics(totals, count, accel.num_processes, lr, grad_norm, cfg)
            progress.log(step, metrics)
            for warning in health.check_pretraining(step, o.schedule.warmup_steps, metrics["contrastive"],
                                                    cfg.loss.num_distractors, metrics["code_ppl"],
                                                    cfg.model.quantizer.groups * cfg.model.quantizer.entries,
                                                    cfg.model.quantizer.groups):
                progress.message(warning)
        if valid is not None and step % cfg.valid_every == 0:
            progress.log(step, validate(cfg, accel, model, valid, step), split="valid")
        early = stop_reason(cfg.max_minutes, cfg.stop_after, step, time.monotonic() - started)
        if step % cfg.save_every == 0 or step == o.max_steps or early:
            last = _save(cfg, accel, model, optimizer, stream, health, step, out_dir)
        if early:
            progress.message(f"stopping at step {step}: {early}")
            break
    if accel.is_main_process and len(stream.rejects):
        stream.rejects.write(out_dir / "rejects.tsv")
    progress.message(f"done at step {step}; data: {stream.rejects.summary()}; "
                     f"non-finite updates skipped: {health.nonfinite_total}")
    progress.close()
    return last or out_dir


def _update(cfg: PretrainConfig, accel, model, optimizer, stream: BatchStream, step: int) -> dict[str, float]:
    """Forward/backward over the update's batches; returns local sums of the metrics."""
    sums = dict.fromkeys(METRICS, 0.0)
    tau = gumbel_temperature(step, *cfg.model.quantizer.temperature)
    n = cfg.optim.accumulation
    model.train()
    for i in range(n):
        batch = next(stream).to(accel.device)
        seeds = [mix_seed(cfg.seed, step, idx) for idx in batch.indices]
        sync = contextlib.nullcontext() if i == n - 1 else accel.no_sync(model)
        with sync, accel.autocast():
            out = model(batch.waves, batch.lengths, seeds, tau)
            loss = (out.contrastive + cfg.loss.diversity_weight * out.diversity
                    + cfg.loss.penalty_weight * out.penalty)
        accel.backward(loss)
        _accumulate(sums, out, float(loss.detach()), batch)
    return sums


def _accumulate(sums: dict[str, float], out, loss: float, batch: Batch) -> None:
    sums["loss"] += loss
    sums["contrastive"] += float(out.contrastive.detach())
    sums["diversity"] += float(out.diversity.detach())
    sums["penalty"] += float(out.penalty.detach())
    sums["count"] += out.count
    sums["correct"] += float(out.correct)
    sums["code_ppl"] += float(out.code_perplexity)
    sums["prob_ppl"] += float(out.prob_perplexity)
    sums["audio_s"] += float(batch.lengths.sum()) / 16000


def _metrics(totals: dict[str, float], count: float, world: int, lr: float, grad_norm: float,
             cfg: PretrainConfig) -> dict[str, float]:
    batches = world * cfg.optim.accumulation
    return {
        "loss": totals["loss"] / count,
        "contrastive": totals["contrastive"] / count,
        "diversity": totals["diversity"] / count,
        "penalty": totals["penalty"] / count,
        "accuracy": totals["correct"] / count,
        "chance": 1 / (cfg.loss.num_distractors + cfg.loss.cross_distractors + 1),
        "code_ppl": totals["code_ppl"] / batches,
        "prob_ppl": totals["prob_ppl"] / batches,
        "lr": lr,
        "grad_norm": grad_norm,
    }


@torch.no_grad()
def validate(cfg: PretrainConfig, accel, model, valid, step: int) -> dict[str, float]:
    """Contrastive loss and accuracy on the validation set (fixed masks: comparable over time)."""
    model.eval()
    sums = dict.fromkeys(METRICS, 0.0)
    tau = gumbel_temperature(step, *cfg.model.quantizer.temperature)
    valid.set_epoch(0)
    batches = 0
    for batch in valid:
        if not len(batch):
            continue
        batch = batch.to(accel.device)
        with accel.autocast():
            out = model(batch.waves, batch.lengths, [mix_seed(cfg.seed, idx) for idx in batch.indices], tau)
        _accumulate(sums, out, float(out.contrastive), batch)
        batches += 1
    totals = dict(zip(METRICS, global_sum(accel, [sums[k] for k in METRICS])))
    count = max(totals["count"], 1.0)
    model.train()
    return {"contrastive": totals["contrastive"] / count, "accuracy": totals["correct"] / count,
            "code_ppl": totals["code_ppl"] / max(1, batches)}


def _save(cfg, accel, model, optimizer, stream: BatchStream, health: Health, step: int, out_dir: Path) -> Path:
    """Writes checkpoint_<step>.pt (and last.pt); every rank's RNG is kept."""
    path = out_dir / f"checkpoint_{step}.pt"
    save_training(accel, path, "pretrain", cfg, model, optimizer, stream, health, step)
    return path
