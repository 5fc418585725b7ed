"""The common form every reader produces and every writer takes: a cssl checkpoint dict.

``kind: pretrain`` holds a :class:`~cssl.model.Wav2Vec2Pretrainer` state (towers under
``model.``, and the quantizer, ``project_q``, ``final_proj`` when the source had them);
``kind: finetune`` holds a :class:`~cssl.model.Wav2Vec2Model` state with its CTC head
``aux`` and the vocabulary. ``config`` carries the ``model`` section (and
``data.normalize``), which is all the library reads back.
"""

from __future__ import annotations

from typing import Any

import torch

from cssl.model import ModelConfig
from cssl.text.vocab import Vocabulary
from cssl.utils.config import from_dict, to_dict

HEADS = ("quantizer.", "project_q.", "final_proj.")
"""Pretraining-only parameters (besides the mask embedding, which the towers keep)."""


def pretrain_payload(model: ModelConfig, state: dict[str, torch.Tensor], normalize: bool, source: str,
                     loss: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pretraining checkpoint dict of ``state`` (pretrainer names)."""
    config: dict[str, Any] = {"model": to_dict(model), "data": {"normalize": normalize}}
    if loss:
        config["loss"] = loss
    return {"kind": "pretrain", "config": config, "model": state, "step": 0, "imported_from": source}


def finetune_payload(model: ModelConfig, state: dict[str, torch.Tensor], vocab: Vocabulary, normalize: bool,
                     source: str, temperature: float = 1.0) -> dict[str, Any]:
    """A fine-tuning checkpoint dict of ``state`` (pretrainer names, head under ``model.aux``)."""
    towers = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    return {"kind": "finetune", "config": {"model": to_dict(model), "data": {"normalize": normalize}},
            "model": towers, "vocab": {"symbols": list(vocab.symbols)}, "temperature": float(temperature),
            "step": 0, "imported_from": source}


def has_heads(ckpt: dict[str, Any]) -> bool:
    """Whether a pretraining checkpoint dict brings the quantizer and projections."""
    return ckpt.get("kind") == "pretrain" and all(any(k.startswith(h) for k in ckpt["model"]) for h in HEADS)


def pretrainer_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state of a cssl checkpoint dict under pretrainer names (head under ``model.aux``), float32."""
    state = ckpt["model"] if ckpt["kind"] == "pretrain" else {f"model.{k}": v for k, v in ckpt["model"].items()}
    return float32(state)


def float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with its floating-point tensors in float32 (a release is float16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def model_config(ckpt: dict[str, Any], source: str) -> ModelConfig:
    """The architecture a cssl checkpoint dict records."""
    return from_dict(ModelConfig, ckpt["config"]["model"], source=f"{source} (model config)")


def vocabulary(ckpt: dict[str, Any]) -> Vocabulary | None:
    """The CTC vocabulary of a fine-tuning checkpoint dict."""
    return Vocabulary(tuple(ckpt["vocab"]["symbols"])) if ckpt.get("kind") == "finetune" else None


def normalize_of(ckpt: dict[str, Any]) -> bool:
    """Whether the model expects zero-mean, unit-variance waveforms."""
    return bool(ckpt.get("config", {}).get("data", {}).get("normalize", False))
