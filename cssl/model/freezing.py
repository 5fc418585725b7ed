"""Freezing parts of the towers, through named helpers applied in one place.

A frozen module has ``requires_grad=False`` on its parameters and is kept in eval mode
(no dropout, fixed statistics) so that freezing means the same outputs for the same
inputs; the optimizer is built from trainable parameters only.
"""

from __future__ import annotations

from torch import nn

from cssl.model.wav2vec2 import Wav2Vec2Model


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Turns gradients of all parameters of ``module`` on or off."""
    for p in module.parameters():
        p.requires_grad_(trainable)


def frozen_modules(model: Wav2Vec2Model, feature_encoder: bool, context_layers: int,
                   whole_encoder: bool) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to freeze: local tower, the lowest context layers, or both towers."""
    if whole_encoder:
        return [("feature_extractor", model.feature_extractor), ("encoder", model.encoder)]
    out: list[tuple[str, nn.Module]] = []
    if feature_encoder:
        out.append(("feature_extractor", model.feature_extractor))
    if context_layers > 0:
        layers = model.encoder.transformer.layers
        if context_layers > len(layers):
            raise ValueError(f"freeze.context_layers={context_layers} but the model has {len(layers)} layers")
        out.append(("encoder.feature_projection", model.encoder.feature_projection))
        out.append(("encoder.transformer.pos_conv_embed", model.encoder.transformer.pos_conv_embed))
        out += [(f"encoder.transformer.layers.{i}", layers[i]) for i in range(context_layers)]
    return out


def apply_freezing(model: Wav2Vec2Model, feature_encoder: bool, context_layers: int,
                   whole_encoder: bool) -> list[str]:
    """Makes everything trainable, then freezes the selected modules; returns their names (for the log)."""
    set_trainable(model, True)
    # The mask embedding only serves the towers' input masking: it trains with the encoder.
    model.mask_embedding.requires_grad_(not whole_encoder)
    chosen = frozen_modules(model, feature_encoder, context_layers, whole_encoder)
    for _, module in chosen:
        set_trainable(module, False)
    return [name for name, _ in chosen]


def set_frozen_eval(model: Wav2Vec2Model, frozen: list[str]) -> None:
    """Puts frozen submodules in eval mode (call after ``model.train()``)."""
    for name in frozen:
        model.get_submodule(name).eval()

