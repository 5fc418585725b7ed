"""Models from checkpoint files: the one loader behind transcription, evaluation, calibration
and fine-tuning's ``init``.

Three kinds of file are read (always with ``weights_only=True``):

* a fine-tuning checkpoint of ours (``kind: finetune``): towers, CTC head, vocabulary,
  calibrated temperature;
* a pretraining checkpoint of ours (``kind: pretrain``): the towers (the pretraining
  heads stay behind), no head;
* a plain state dict of the towers (torchaudio's ``Wav2Vec2Model.state_dict()``), whose
  architecture the caller gives.

A checkpoint's ``config`` is the stage config that wrote it; the library reads only its
``model`` section (the architecture) and ``data.normalize``, so it needs no stage code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cssl.config import from_dict
from cssl.model import ModelConfig, Wav2Vec2Model, Wav2Vec2Pretrainer, build_model, build_pretrainer
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import CheckpointError, load_checkpoint


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
    ckpt = path if isinstance(path, dict) else load_checkpoint(path)
    with torch.random.fork_rng(devices=[]):
        return _rebuild(ckpt, config, name or (str(path) if not isinstance(path, dict) else "checkpoint"))


def load_pretrainer(ckpt: dict[str, Any], name: str, num_distractors: int = 100, cross_distractors: int = 0,
                    logit_temperature: float = 0.1) -> tuple[Wav2Vec2Pretrainer, ModelConfig]:
    """The whole pretrainer of a pretraining checkpoint or release (towers, quantizer,
    projections, mask embedding) in float32, and its architecture."""
    if ckpt.get("kind") != "pretrain":
        raise CheckpointError(f"{name}: not a pretraining checkpoint (kind {ckpt.get('kind')!r})")
    model_cfg = from_dict(ModelConfig, ckpt["config"]["model"], source=f"{name} (model config)")
    with torch.random.fork_rng(devices=[]):
        model = build_pretrainer(model_cfg, num_distractors, cross_distractors, logit_temperature)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model, model_cfg


def _rebuild(ckpt: dict[str, Any], config: ModelConfig | None, name: str) -> LoadedModel:
    kind = ckpt.get("kind") if isinstance(ckpt.get("kind"), str) else None
    if kind in ("finetune", "pretrain"):
        saved = ckpt["config"]
        model_cfg = from_dict(ModelConfig, saved["model"], source=f"{name} (model config)")
        normalize = bool(saved.get("data", {}).get("normalize", False))
        if kind == "finetune":
            vocab = Vocabulary(tuple(ckpt["vocab"]["symbols"]))
            model = build_model(model_cfg, vocab_size=len(vocab))
            _load(model, ckpt["model"], name, strict=True)
            return LoadedModel(model, model_cfg, vocab, float(ckpt.get("temperature", 1.0)), normalize,
                               f"fine-tuning checkpoint {name} (step {ckpt.get('step')})")
        towers = {k[len("model."):]: v for k, v in ckpt["model"].items() if k.startswith("model.")}
        model = build_model(model_cfg)
        _load(model, towers, name, strict=True)
        return LoadedModel(model, model_cfg, None, 1.0, normalize,
                           f"pretraining checkpoint {name} (step {ckpt.get('step')})")
    if kind is not None or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{name}: neither a cssl checkpoint nor a state dict of tensors "
                              f"(kind {kind!r}, keys {sorted(ckpt)[:5]})")
    if config is None:
        raise CheckpointError(f"{name}: a plain state dict carries no architecture; give its model config")
    model = build_model(config)
    towers = {k: v for k, v in ckpt.items() if not k.startswith("aux.")}
    _load(model, towers, name, strict=False)
    return LoadedModel(model, config, None, 1.0, False, f"state dict {name}")


def _load(model: Wav2Vec2Model, state: dict[str, torch.Tensor], name: str, strict: bool) -> None:
    """Loads ``state``; a mismatch names the first differing key and shapes (not torch's raw error).

    Non-strict loading (a peer's state dict) tolerates a missing mask embedding and CTC head only.
    """
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(f"{name}: '{key}' has shape {tuple(value.shape)} in the file and "
                                  f"{tuple(own[key].shape)} in the model; set model.* to the file's architecture")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if not strict:
        missing = [k for k in missing if not k.startswith("aux.") and k != "mask_embedding"]
    if missing or unexpected:
        raise CheckpointError(f"{name}: does not match the model config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}; set model.* to the file's architecture")
