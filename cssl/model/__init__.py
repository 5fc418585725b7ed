"""Model: local tower, context tower, quantizer, masking and losses (pure modules, no I/O)."""

from cssl.model.config import ModelConfig
from cssl.model.wav2vec2 import (
    EncoderOutput,
    PretrainOutput,
    Wav2Vec2Model,
    Wav2Vec2Pretrainer,
    build_model,
    build_pretrainer,
    gumbel_temperature,
)

__all__ = [
    "EncoderOutput",
    "ModelConfig",
    "PretrainOutput",
    "Wav2Vec2Model",
    "Wav2Vec2Pretrainer",
    "build_model",
    "build_pretrainer",
    "gumbel_temperature",
]
