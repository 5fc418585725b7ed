"""The fairseq2 side of the interop tests; runs in the fairseq2 environment (.venv-fairseq2), not cssl's.

    python tests/interop/fairseq2_peer.py build DIR      # fairseq2's own random models: DIR/NAME.pt + NAME.yaml
    python tests/interop/fairseq2_peer.py run DIR NAME   # loads DIR/NAME.yaml through fairseq2's asset store
    python tests/interop/fairseq2_peer.py loss DIR NAME  # fairseq2's pretraining loss on given masks and distractors

``build`` and ``run`` write ``DIR/NAME.out.pt``: fairseq2's outputs on the waveforms in
``DIR/waves.pt`` (eval mode): normalised local features, Transformer output, quantized vectors
and both projections. ``loss`` runs ``Wav2Vec2Model.forward`` with the mask and distractor
indices of ``DIR/given.pt`` in place of its random draws and writes ``DIR/NAME.loss.pt``.
Only torch and fairseq2 are imported, so nothing of cssl's stack is needed here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import yaml

MODELS = {
    # post-norm, group-normed first convolution, features narrower than the Transformer (BASE's layout)
    "base_like": {"encoder_config": {"model_dim": 32, "feature_dim": 16, "first_pass_dropout_p": 0.1,
                                     "feature_extractor_layer_descs": [[16, 10, 5], [16, 3, 2], [16, 2, 2]],
                                     "pos_conv_kernel_size": 16, "num_pos_conv_groups": 2, "num_encoder_layers": 2,
                                     "num_encoder_attn_heads": 2, "ffn_inner_dim": 64},
                  "final_dim": 8, "quantized_dim": 16, "num_codebook_entries": 8, "num_distractors": 5},
    # large_lv60k's layout: pre-norm, layer-normed convolutions with bias
    "lv60k_like": {"encoder_config": {"model_dim": 32, "feature_dim": 16, "layer_norm_features": False,
                                      "feature_extractor_layer_descs": [[16, 10, 5], [16, 3, 2]],
                                      "feature_extractor_bias": True, "feature_extractor_layer_norm_convs": True,
                                      "pos_conv_kernel_size": 8, "num_pos_conv_groups": 4, "num_encoder_layers": 2,
                                      "num_encoder_attn_heads": 4, "ffn_inner_dim": 48, "norm_order": "PRE"},
                   "final_dim": 12, "quantized_dim": 8, "num_codebook_entries": 4},
    # features as wide as the Transformer: fairseq2 has no projection then
    "same_width": {"encoder_config": {"model_dim": 16, "feature_dim": 16,
                                      "feature_extractor_layer_descs": [[16, 10, 5], [16, 3, 2]],
                                      "pos_conv_kernel_size": 4, "num_pos_conv_groups": 2, "num_encoder_layers": 1,
                                      "num_encoder_attn_heads": 2, "ffn_inner_dim": 32},
                   "final_dim": 8, "quantized_dim": 8, "num_codebook_entries": 4},
}


def load(name: str) -> torch.nn.Module:
    """``name`` through fairseq2's asset store (the user asset folder: ``FAIRSEQ2_USER_ASSET_DIR``)."""
    from fairseq2.models import load_model

    return load_model(name, device=torch.device("cpu"), dtype=torch.float32).eval()


@torch.no_grad()
def outputs(model: torch.nn.Module, waves: torch.Tensor) -> dict[str, torch.Tensor]:
    """fairseq2's eval-mode outputs on ``waves`` (N, S), no masking."""
    from fairseq2.nn import BatchLayout

    frontend = model.encoder_frontend
    layout = BatchLayout(tuple(waves.shape), seq_lens=[waves.shape[1]] * waves.shape[0])
    normed, layout, _ = frontend.extract_features(waves, layout)  # (N, T, C)
    seqs, _ = frontend.process_features(normed, layout, None)  # (N, T, D)
    context = model.encoder(seqs, layout)  # (N, T, D)
    quantized = model.quantizer(normed).quantized_vectors  # (N, T, Q)
    return {"normed": normed, "context": context, "quantized": quantized,
            "targets": model.final_target_proj(quantized), "projected": model.final_proj(context)}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random (norms and biases too), so that no mapping error hides behind init values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.dim() == 1 and p.shape[0] > 1 else 0.0))


def build(folder: Path) -> None:
    """fairseq2's own random models, written as a fairseq2 user would: checkpoint and asset card."""
    for name, overrides in MODELS.items():
        card = {"name": name, "model_family": "wav2vec2", "model_arch": "base", "model_config": overrides,
                "checkpoint": f"{name}.pt"}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

    hub = get_wav2vec2_model_hub()
    for seed, name in enumerate(MODELS):
        model = hub.create_new_model(hub.get_model_config(name), device=torch.device("cpu"), dtype=torch.float32)
        randomize(model, seed)
        model.quantizer.num_updates.fill_(123)
        torch.save({"model": model.state_dict()}, folder / f"{name}.pt")
        run(folder, name)  # loaded back through the card: the files as fairseq2 itself reads them


class GivenMask(torch.nn.Module):
    """Stands in for fairseq2's masker: the given temporal mask, fairseq2's own mask embedding."""

    def __init__(self, embed: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.embed, self.mask = embed, mask

    def forward(self, seqs: torch.Tensor, layout: object) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = seqs.clone()
        seqs[self.mask] = self.embed.type_as(seqs)
        return seqs, self.mask


@torch.no_grad()
def loss(folder: Path, name: str) -> None:
    from fairseq2.nn import BatchLayout

    model = load(name)
    waves = torch.load(folder / "waves.pt", weights_only=True)
    given = torch.load(folder / "given.pt", weights_only=True)
    mask, index = given["mask"], given["distractors"]  # (N, T) bool, (N, M, K) into each row's M masked frames
    rows = torch.arange(mask.shape[0])[:, None, None]
    model.masker = GivenMask(model.masker.temporal_mask_embed, mask)
    model._sample_distractors = lambda targets: targets[rows, index]  # (N, M, D) -> (N, M, K, D)
    layout = BatchLayout(tuple(waves.shape), seq_lens=[waves.shape[1]] * waves.shape[0])
    parts, _ = model(waves, layout, diversity_weight=0.1, features_penalty_weight=10.0)
    torch.save({"aggregate": parts.aggregate, "contrastive": parts.contrastive, "diversity": parts.diversity,
                "penalty": parts.features_penalty}, folder / f"{name}.loss.pt")


def run(folder: Path, name: str) -> None:
    waves = torch.load(folder / "waves.pt", weights_only=True)
    torch.save(outputs(load(name), waves), folder / f"{name}.out.pt")


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2]).resolve()
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(folder)  # read when fairseq2 first sets itself up
    os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    if command == "build":
        build(folder)
    elif command == "run":
        run(folder, sys.argv[3])
    elif command == "loss":
        loss(folder, sys.argv[3])
    else:
        raise SystemExit(f"unknown command {command!r}: build DIR | run DIR NAME | loss DIR NAME")
