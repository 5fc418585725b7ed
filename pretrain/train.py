"""The pretraining loop: a thin layer around accelerate.

Each update draws ``optim.accumulation`` batches in all (shared among the processes),
sums the losses, normalises gradients by the number of masked frames of the whole
update (all processes), clips and steps.
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
from cssl.errors import DataError
from cssl.model import build_pretrainer, gumbel_temperature
from cssl.seeding import mix_seed
from cssl.train.health import Health
from cssl.train.plots import plot_pretraining
from cssl.train.progress import Progress
from cssl.train.runtime import (build_optimizer, describe_runtime, global_sum, guarded_update, local_accumulation,
                                make_accelerator, seed_everything, set_lr, set_threads, stop_reason)
from cssl.train.state import find_resume, prepare_out_dir, restore_training, save_training
from cssl.train.stream import BatchStream
from pretrain.config import PretrainConfig

METRICS = ("loss", "contrastive", "diversity", "penalty", "count", "correct", "code_ppl", "prob_ppl", "audio_s")


def main(cfg: PretrainConfig) -> Path:
    """Trains, checkpointing as it goes; returns the path of the last checkpoint."""
    set_threads(cfg.threads)
    accel = make_accelerator(cfg.mixed_precision)
    seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    notes = prepare_out_dir(out_dir, accel.is_main_process)
    accumulation = local_accumulation(cfg.optim.accumulation, accel.num_processes)
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
    stream = BatchStream(loader, cfg.data.manifest, _rejects_path(out_dir, accel.process_index))
    health, step = Health(cfg.max_nonfinite), 0
    found = find_resume(cfg.resume, out_dir)
    if found:
        resume, ckpt, skipped = found
        notes += skipped
        restore_training(ckpt, "pretrain", "use it as init= of a stage instead",
                         model, optimizer, stream, health, accel.process_index)
        step = int(ckpt["step"])
    model, optimizer = accel.prepare(model, optimizer)
    progress = Progress(out_dir, o.max_steps, accel.is_main_process, start_step=step)
    for note in notes:
        progress.message(note)
    progress.message(f"pretraining: {describe_runtime(accel)}; "
                     f"{len(loader.dataset)} utterances, {loader.dropped} outside the length filters; "
                     f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
                     f"{o.accumulation} batch(es) per update"
                     + (f"; resumed from {resume} at step {step}" if found else ""))
    started, last = time.monotonic(), None
    while step < o.max_steps:
        lr = set_lr(optimizer, o.lr, step, o.max_steps, o.schedule)
        sums = _update(cfg, accel, model, stream, step, accumulation)
        totals = dict(zip(METRICS, global_sum(accel, [sums[k] for k in METRICS])))
        count = max(totals["count"], 1.0)
        grad_norm = guarded_update(accel, model, optimizer, health, totals["loss"], totals["count"], o.grad_clip, step)
        if math.isnan(grad_norm):
            progress.message(f"step {step}: non-finite loss, update skipped ({health.nonfinite_total} so far)")
        step += 1
        progress.add_audio(totals["audio_s"])
        if step % cfg.log_every == 0 or step == o.max_steps:
            metrics = _metrics(totals, count, lr, grad_norm, cfg)
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
            if accel.is_main_process:
                plot_pretraining(out_dir, out_dir / "pretrain_curves.png")
        if early:
            progress.message(f"stopping at step {step}: {early}")
            break
    if accel.is_main_process and len(stream.rejects):
        stream.rejects.write(out_dir / "rejects.tsv")
    progress.message(f"done at step {step}; data: {stream.rejects.summary()}; "
                     f"non-finite updates skipped: {health.nonfinite_total}")
    progress.close()
    return last or out_dir


def _rejects_path(out_dir: Path, rank: int) -> Path:
    return out_dir / ("rejects.tsv" if rank == 0 else f"rejects.rank{rank}.tsv")


def _update(cfg: PretrainConfig, accel, model, stream: BatchStream, step: int, n: int) -> dict[str, float]:
    """Forward/backward over this process's ``n`` batches of the update; returns local sums of the metrics."""
    sums = dict.fromkeys(METRICS, 0.0)
    tau = gumbel_temperature(step, *cfg.model.quantizer.temperature)
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


def _metrics(totals: dict[str, float], count: float, lr: float, grad_norm: float,
             cfg: PretrainConfig) -> dict[str, float]:
    batches = cfg.optim.accumulation  # in all processes together
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
    if totals["count"] == 0:
        raise DataError(f"{cfg.data.valid_manifest}: no validation utterance could be scored "
                        f"({len(valid.dataset)} listed; unreadable files are skipped and counted); "
                        "fix the manifest or leave data.valid_manifest unset")
    count = totals["count"]
    model.train()
    return {"contrastive": totals["contrastive"] / count, "accuracy": totals["correct"] / count,
            "code_ppl": totals["code_ppl"] / max(1, batches)}


def _save(cfg, accel, model, optimizer, stream: BatchStream, health: Health, step: int, out_dir: Path) -> Path:
    """Writes checkpoint_<step>.pt (and last.pt); every rank's RNG is kept."""
    path = out_dir / f"checkpoint_{step}.pt"
    save_training(accel, path, "pretrain", cfg, model, optimizer, stream, health, step)
    return path
