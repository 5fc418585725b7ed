"""The pretraining stage: contrastive learning of the two towers on unlabeled audio.

What is the stage's own (:class:`Pretraining`): each batch's loss is the contrastive
loss plus the weighted diversity loss and feature penalty, summed over masked frames;
the update is normalised by the number of masked frames of the whole update (all
processes). Masks, distractors and Gumbel noise of an utterance are seeded by (run
seed, update, utterance index): the run is the same on one process or several. The
update loop itself is :func:`cssl.train.loop.train`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from pathlib import Path

import torch

from cssl.convert import read_checkpoint
from cssl.convert.loading import load_model, load_pretrainer
from cssl.convert.payload import has_heads
from cssl.data.alignment import alignment_path
from cssl.data.dataset import Batch, DataConfig, build_loader
from cssl.data.shard_loader import StreamConfig
from cssl.data.shards import is_sharded, read_index
from cssl.model import Wav2Vec2Pretrainer, build_pretrainer, gumbel_temperature
from cssl.probe import Probe
from cssl.train.batch_stream import BatchStream
from cssl.train.health import Health
from cssl.train.loop import Stage, open_run, releasing_out_dir, resume_run, train
from cssl.train.plots import plot_pretraining
from cssl.train.runtime import build_optimizer, global_sum
from cssl.train.shard_batch_stream import ShardBatchStream
from cssl.utils.config import ConfigError
from cssl.utils.errors import DataError
from cssl.utils.seeding import mix_seed
from pretrain.config import PretrainConfig

FIGURES = ("loss", "contrastive", "diversity", "penalty", "count", "correct", "code_ppl", "prob_ppl", "audio_s")


class Pretraining(Stage):
    """The pretraining stage's parts of the update loop."""

    kind = "pretrain"
    sums = FIGURES

    def __init__(self, cfg: PretrainConfig, accel, valid, health: Health, probe: Probe | None = None) -> None:
        self.cfg, self.accel, self.valid, self.health, self.probe = cfg, accel, valid, health, probe
        self.validates = valid is not None

    def forward(self, model, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.cfg
        tau = gumbel_temperature(step, *c.model.quantizer.temperature)
        out = model(batch.waves, batch.lengths, [mix_seed(c.seed, step, idx) for idx in batch.indices], tau)
        loss = out.contrastive + c.loss.diversity_weight * out.diversity + c.loss.penalty_weight * out.penalty
        return loss, _figures(out, float(loss.detach()), batch)

    def log(self, step: int, totals: dict[str, float], lr: float, grad_norm: float):
        c, count = self.cfg, max(totals["count"], 1.0)
        batches = c.optim.accumulation  # in all processes together
        metrics = {
            "loss": totals["loss"] / count,
            "contrastive": totals["contrastive"] / count,
            "diversity": totals["diversity"] / count,
            "penalty": totals["penalty"] / count,
            "accuracy": totals["correct"] / count,
            "chance": 1 / (c.loss.num_distractors + c.loss.cross_distractors + 1),
            "code_ppl": totals["code_ppl"] / batches,
            "prob_ppl": totals["prob_ppl"] / batches,
            "lr": lr,
            "grad_norm": grad_norm,
        }
        q = c.model.quantizer
        warnings = self.health.check_pretraining(step, c.optim.schedule.warmup_steps, metrics["contrastive"],
                                                 c.loss.num_distractors + c.loss.cross_distractors,  # every negative
                                                 metrics["code_ppl"], q.groups * q.entries,
                                                 q.groups)
        return metrics, warnings

    @torch.no_grad()
    def validate(self, model, step: int) -> dict[str, float]:
        """Contrastive loss and accuracy on the validation set (fixed masks: comparable over time)."""
        c, accel = self.cfg, self.accel
        model.eval()
        sums = dict.fromkeys(FIGURES, 0.0)
        tau = gumbel_temperature(step, *c.model.quantizer.temperature)
        self.valid.set_epoch(0)
        batches = 0
        for batch in self.valid:
            if not len(batch):
                continue
            batch = batch.to(accel.device)
            with accel.autocast():
                out = model(batch.waves, batch.lengths, [mix_seed(c.seed, idx) for idx in batch.indices], tau)
            for key, value in _figures(out, float(out.contrastive), batch).items():
                sums[key] += value
            batches += 1
        *summed, batches = global_sum(accel, [sums[k] for k in FIGURES] + [batches])  # over every process
        totals = dict(zip(FIGURES, summed))
        if totals["count"] == 0:
            raise DataError(f"{c.data.valid_manifest}: no validation utterance could be scored "
                            f"({len(self.valid.dataset)} listed; unreadable files are skipped and counted); "
                            "fix the manifest or leave data.valid_manifest unset")
        model.train()
        metrics = {"contrastive": totals["contrastive"] / totals["count"],
                   "accuracy": totals["correct"] / totals["count"], "code_ppl": totals["code_ppl"] / max(1, batches)}
        if self.probe is not None:  # main process only: the other processes wait at the next collective
            pretrainer = accel.unwrap_model(model)
            result = self.probe.run(pretrainer.model, pretrainer.quantizer, c.probe.clusters, seed=step)
            metrics["pnmi"] = result.best().scores.pnmi
            metrics.update({f"pnmi_{s.level.replace(' ', '')}": s.scores.pnmi for s in result.levels})
        return metrics

    def after_save(self, out_dir: Path) -> None:
        plot_pretraining(out_dir, out_dir / "pretrain_curves.png")


def validation_probe(cfg: PretrainConfig, main_process: bool) -> Probe | None:
    """The phonetic probe of validation, when the validation manifest has phone alignments beside it."""
    manifest = cfg.data.valid_manifest
    if not (main_process and manifest and cfg.probe.utterances and alignment_path(manifest).is_file()):
        return None
    return Probe.from_manifest(manifest, max_utterances=cfg.probe.utterances, normalize=cfg.data.normalize)


@releasing_out_dir
def main(cfg: PretrainConfig) -> Path:
    """Trains, checkpointing as it goes; returns the path of the last checkpoint."""
    run = open_run(cfg)
    accel = run.accel
    model, source = initial_pretrainer(cfg)
    o = cfg.optim
    optimizer = build_optimizer(model.parameters(), o.lr, o.betas, o.eps, o.weight_decay, o.fused)
    stream, size = training_stream(cfg, accel, run.rejects_path)
    valid = None
    if cfg.data.valid_manifest:
        valid = build_loader(cfg.data, cfg.data.valid_manifest, train=False, seed=cfg.seed,
                             num_replicas=accel.num_processes, rank=accel.process_index)
    health = Health(cfg.max_nonfinite)
    stage = Pretraining(cfg, accel, valid, health, validation_probe(cfg, accel.is_main_process))
    resume_run(run, stage, model, optimizer, stream, health)
    last = train(run, stage, model, optimizer, stream, health,
                 f"pretraining from {source}, {size}, "
                 f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    run.progress.message(f"done at step {run.step}; data: {stream.rejects.summary()}; "
                         f"non-finite updates skipped: {health.nonfinite_total}")
    run.progress.close()
    return last or run.out_dir / "last.pt"


def training_stream(cfg: PretrainConfig, accel, rejects_path: Path):
    """Batches of ``data.manifest``: a manifest, or a sharded corpus (its folder or ``index.json``); and a size line."""
    if is_sharded(cfg.data.manifest):
        d = cfg.data
        ignored = unsupported_by_shards(d)
        if ignored:
            raise ConfigError(f"data.manifest={d.manifest} is a sharded corpus, whose stream does not apply "
                              f"{', '.join(ignored)}: leave them at their defaults, or pretrain from a manifest "
                              "(cssl data manifest) to use them")
        index = read_index(cfg.data.manifest)
        stream = ShardBatchStream(index, StreamConfig(d.max_batch_samples, crop_samples=d.crop_samples, seed=cfg.seed,
                                                      normalize=d.normalize),
                                  accel.process_index, accel.num_processes, d.num_workers, rejects_path)
        return stream, f"{index.entries} utterances in {len(index.shards)} shards ({index.hours:.1f} h)"
    loader = build_loader(cfg.data, cfg.data.manifest, train=True, seed=cfg.seed,
                          num_replicas=accel.num_processes, rank=accel.process_index)
    return (BatchStream(loader, cfg.data.manifest, rejects_path),
            f"{len(loader.dataset)} utterances ({loader.dropped} outside the length filters)")


SHARD_STREAM_KEYS = ("manifest", "valid_manifest", "normalize", "crop_samples", "max_batch_samples", "num_workers")
"""The data keys a sharded corpus's stream honours; the others must keep their defaults there."""


def unsupported_by_shards(data: DataConfig) -> list[str]:
    """``data.KEY=VALUE`` of each key set away from its default that the shard stream would not apply."""
    def changed(value, default, prefix: str) -> list[str]:
        if dataclasses.is_dataclass(value):  # augment: name the key inside it
            return [k for f in fields(value)
                    for k in changed(getattr(value, f.name), getattr(default, f.name), f"{prefix}.{f.name}")]
        return [] if value == default else [f"{prefix}={value}"]

    default = DataConfig()
    return [k for f in fields(DataConfig) if f.name not in SHARD_STREAM_KEYS
            for k in changed(getattr(data, f.name), getattr(default, f.name), f"data.{f.name}")]


def initial_pretrainer(cfg: PretrainConfig) -> tuple[Wav2Vec2Pretrainer, str]:
    """A fresh pretrainer, or one starting from ``cfg.init`` (whose architecture then replaces ``cfg.model``).

    A pretraining checkpoint or release brings everything the task learned (towers, quantizer,
    projections, mask embedding); other files bring the towers, with a new quantizer.
    """
    def build() -> Wav2Vec2Pretrainer:
        return build_pretrainer(cfg.model, cfg.loss.num_distractors, cfg.loss.cross_distractors,
                                cfg.loss.logit_temperature)

    if not cfg.init:
        return build(), "random init"
    ckpt = read_checkpoint(cfg.init, cfg.model)
    # Masking and the Gumbel temperature schedule are this run's choices; the architecture is the file's.
    mask, temperature = cfg.model.mask, cfg.model.quantizer.temperature

    def ours(model_cfg):
        return dataclasses.replace(model_cfg, mask=mask,
                                   quantizer=dataclasses.replace(model_cfg.quantizer, temperature=temperature))

    if has_heads(ckpt):
        model, cfg.model = load_pretrainer(ckpt, cfg.init, cfg.loss.num_distractors, cfg.loss.cross_distractors,
                                           cfg.loss.logit_temperature)
        cfg.model = ours(cfg.model)
        model.mask_cfg = mask
        what = ckpt.get("imported_from") or f"pretraining checkpoint {cfg.init} (step {ckpt['step']})"
        return model, f"{what}, quantizer included"
    loaded = load_model(ckpt, cfg.model, name=cfg.init)
    cfg.model = ours(loaded.config)
    model = build()
    towers = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("aux.")}
    model.model.load_state_dict(towers)
    return model, f"{loaded.source} (towers and mask embedding; new quantizer)"


def _figures(out, loss: float, batch: Batch) -> dict[str, float]:
    """The summed figures of one batch's :class:`~cssl.model.PretrainOutput`."""
    return {
        "loss": loss,
        "contrastive": float(out.contrastive.detach()),
        "diversity": float(out.diversity.detach()),
        "penalty": float(out.penalty.detach()),
        "count": out.count,
        "correct": float(out.correct),
        "code_ppl": float(out.code_perplexity),
        "prob_ppl": float(out.prob_perplexity),
        "audio_s": float(batch.lengths.sum()) / 16000,
    }
