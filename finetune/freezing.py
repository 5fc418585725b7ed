"""Freezing parts of the towers, through named helpers applied in one place.

A frozen module has ``requires_grad=False`` on its parameters and is kept in eval mode
(no dropout, fixed statistics) so that freezing means the same outputs for the same
inputs; the optimizer is built from trainable parameters only. :class:`FreezingRule`
adds the head-only warm-up of fine-tuning: for its first updates only the CTC head gets
gradients, while the towers keep their mode (dropout as in training) and build no graph.
"""

from __future__ import annotations

from dataclasses import dataclass

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



@dataclass(frozen=True)
class FreezingRule:
    """What trains at each update of a fine-tuning run."""

    feature_encoder: bool
    """Keep the local tower frozen throughout."""
    context_layers: int
    """Also freeze the feature projection, position conv and this many lowest Transformer layers."""
    head_only_steps: int = 0
    """Updates at the start during which only the CTC head gets gradients."""

    def apply(self, model: Wav2Vec2Model, step: int) -> list[str]:
        """Sets ``requires_grad`` for update ``step``; returns the frozen modules (to keep in eval mode).

        Call it after the optimizer is built (with everything it will ever train) and, under
        DDP, after wrapping: parameters turned off here simply get no gradient for a while.
        """
        frozen = apply_freezing(model, self.feature_encoder, self.context_layers, whole_encoder=False)
        if step < self.head_only_steps:
            for name, p in model.named_parameters():
                if not name.startswith("aux."):
                    p.requires_grad_(False)
        return frozen
