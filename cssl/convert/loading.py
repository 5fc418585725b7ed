"""Models from checkpoint files: the one loader behind transcription, evaluation, calibration
and both stages' ``init``.

Any file :func:`cssl.convert.read_checkpoint` reads will do (always without running code
from it): a fine-tuning checkpoint of ours (towers, CTC head, vocabulary, calibrated
temperature), a pretraining checkpoint of ours (towers; :func:`load_pretrainer` also
rebuilds the quantizer and projections), a transformers folder, a fairseq wav2vec 2.0
checkpoint, or a torchaudio state dict (whose architecture the caller gives unless its
``NAME.json`` does).

A checkpoint's ``config`` is the stage config that wrote it; the library reads only its
``model`` section (the architecture) and ``data.normalize``, so it needs no stage code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cssl.convert import read_checkpoint
from cssl.convert.hints import mismatch_hint
from cssl.convert.payload import float32, model_config, normalize_of, vocabulary
from cssl.model import ModelConfig, Wav2Vec2Model, Wav2Vec2Pretrainer, build_model, build_pretrainer
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import CheckpointError


@dataclass
class LoadedModel:
    """A model rebuilt from a file, with what came with it."""

    model: Wav2Vec2Model
    """The towers, with the CTC head (``aux``) when the file has one."""
    config: ModelConfig
    """Its architecture."""
    vocab: Vocabulary | None
    """The CTC vocabulary (fine-tuning checkpoints only)."""
    temperature: float
    """Calibrated temperature that divides the logits (1 when never calibrated)."""
    normalize: bool
    """Whether the model was trained on zero-mean, unit-variance waveforms."""
    source: str
    """What was read, for logs: ``pretraining checkpoint X (step N)`` and the like."""


def load_model(path: str | Path | dict[str, Any], config: ModelConfig | None = None,
               name: str | None = None) -> LoadedModel:
    """Rebuilds the model a file holds (or an already loaded checkpoint ``dict``).

    ``config`` is the architecture of a plain state dict (checkpoints of ours carry theirs).
    Loading leaves torch's random generator as it was: a run draws the same initial weights
    and masks whether or not it loaded a model first.
    """
    ckpt = path if isinstance(path, dict) else read_checkpoint(path, config)
    with torch.random.fork_rng(devices=[]):
        return _rebuild(ckpt, config, name or (str(path) if not isinstance(path, dict) else "checkpoint"))


def load_pretrainer(ckpt: dict[str, Any], name: str, num_distractors: int = 100, cross_distractors: int = 0,
                    logit_temperature: float = 0.1) -> tuple[Wav2Vec2Pretrainer, ModelConfig]:
    """The whole pretrainer of a pretraining checkpoint dict (towers, quantizer, projections,
    mask embedding) in float32, and its architecture."""
    if ckpt.get("kind") != "pretrain":
        raise CheckpointError(f"{name}: not a pretraining checkpoint (kind {ckpt.get('kind')!r})")
    model_cfg = model_config(ckpt, name)
    with torch.random.fork_rng(devices=[]):
        model = build_pretrainer(model_cfg, num_distractors, cross_distractors, logit_temperature)
    _check_shapes(model, ckpt["model"], name)
    missing, unexpected = model.load_state_dict(float32(ckpt["model"]), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{name}: does not match its model config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model, model_cfg


def _rebuild(ckpt: dict[str, Any], config: ModelConfig | None, name: str) -> LoadedModel:
    kind = ckpt.get("kind") if isinstance(ckpt.get("kind"), str) else None
    if kind not in ("finetune", "pretrain"):
        if kind is not None or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(f"{name}: neither a cssl checkpoint nor a state dict of tensors "
                                  f"(kind {kind!r}, keys {sorted(ckpt)[:5]})")
        if config is None:
            raise CheckpointError(f"{name}: a plain state dict carries no architecture; give its model config")
        from cssl.convert.torchaudio import read_torchaudio

        ckpt = read_torchaudio(Path(name), ckpt, config)
        kind = ckpt["kind"]
    model_cfg = model_config(ckpt, name)
    what = ckpt.get("imported_from") or f"{'fine-tuning' if kind == 'finetune' else 'pretraining'} checkpoint {name}"
    step = f" (step {ckpt.get('step')})" if not ckpt.get("imported_from") else ""
    if kind == "finetune":
        vocab = vocabulary(ckpt)
        model = build_model(model_cfg, vocab_size=len(vocab))
        _load(model, ckpt["model"], name)
        return LoadedModel(model, model_cfg, vocab, float(ckpt.get("temperature", 1.0)), normalize_of(ckpt), what + step)
    towers = {k[len("model."):]: v for k, v in ckpt["model"].items() if k.startswith("model.")}
    model = build_model(model_cfg)
    _load(model, towers, name)
    return LoadedModel(model, model_cfg, None, 1.0, normalize_of(ckpt), what + step)


def _load(model: Wav2Vec2Model, state: dict[str, torch.Tensor], name: str) -> None:
    """Loads ``state``; a mismatch names the first differing key, both shapes and the setting
    that would fit (not torch's raw error). Only a torchaudio file may lack the mask embedding."""
    _check_shapes(model, state, name)
    missing, unexpected = model.load_state_dict(float32(state), strict=False)
    missing = [k for k in missing if k != "mask_embedding"]
    if missing or unexpected:
        hint = mismatch_hint(missing, unexpected)
        raise CheckpointError(f"{name}: does not match the model config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}; {hint}")


def _check_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"{name}: '{key}' has shape {tuple(value.shape)} in the file and "
                                  f"{tuple(own[key].shape)} in the model; {mismatch_hint([], [], key, tuple(value.shape))}")
