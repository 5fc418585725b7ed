"""fairseq2 wav2vec2 checkpoints, both ways.

The format tests run everywhere. The comparisons with fairseq2 itself (marker ``interop``, run
by ``make test-interop``) need its own environment, ``.venv-fairseq2`` (fairseq2 0.8.1 pins
torch 2.9.1, so it cannot share cssl's): there ``tests/interop/fairseq2_peer.py`` builds and
loads the models through fairseq2's factory and asset store, and this side compares
outputs (eval mode, unpadded) and the pretraining loss on the same masks and distractors.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from test_convert import LARGE_LIKE, SMALL, randomize, waves  # noqa: E402

from cssl.convert import detect, read_checkpoint, write_checkpoint
from cssl.convert.loading import load_pretrainer
from cssl.convert.payload import pretrain_payload
from cssl.model import ModelConfig, build_pretrainer, losses
from cssl.model.config import ContextConfig, FeatureEncoderConfig, QuantizerConfig
from cssl.train.checkpoint import CheckpointError
from cssl.utils.config import to_dict

ROOT = Path(__file__).resolve().parents[1]
PEER = Path(__file__).resolve().parent / "interop" / "fairseq2_peer.py"
PEER_MODELS = ("base_like", "lv60k_like", "same_width")
SAME_WIDTH = ModelConfig(
    feature_encoder=FeatureEncoderConfig(conv_layers=[(16, 10, 5), (16, 3, 2)]),
    context=ContextConfig(embed_dim=16, num_layers=1, num_heads=2, ffn_dim=32, pos_conv_kernel=4, pos_conv_groups=2),
    quantizer=QuantizerConfig(groups=2, entries=4, dim=8),
    final_dim=8,
)
LOSS = {"num_distractors": 5, "logit_temperature": 0.1}


def fairseq2_python() -> str | None:
    """The fairseq2 environment's interpreter: ``CSSL_FAIRSEQ2_PYTHON`` or ``.venv-fairseq2``."""
    given = os.environ.get("CSSL_FAIRSEQ2_PYTHON")
    if given:
        return given
    local = ROOT / ".venv-fairseq2" / "bin" / "python"
    return str(local) if local.exists() else None


needs_fairseq2 = pytest.mark.skipif(fairseq2_python() is None, reason="no fairseq2 environment (make test-interop makes it)")


def peer(*args: object) -> None:
    """Runs the fairseq2 side; its output is shown when it fails."""
    done = subprocess.run([fairseq2_python(), str(PEER), *map(str, args)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"fairseq2 side failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


def payload_of(cfg: ModelConfig, seed: int = 0, identity_projection: bool = False) -> dict:
    pretrainer = randomize(build_pretrainer(cfg), seed)
    if identity_projection:
        proj = pretrainer.model.encoder.feature_projection.projection
        with torch.no_grad():
            proj.weight.copy_(torch.eye(proj.weight.shape[0]))
            proj.bias.zero_()
    return pretrain_payload(cfg, pretrainer.state_dict(), normalize=True, source="test", loss=LOSS)


@torch.no_grad()
def our_outputs(ckpt: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The peer's outputs (fairseq2_peer.outputs), from cssl's model."""
    pretrainer, _ = load_pretrainer(ckpt, "test")
    pretrainer.eval()
    out = pretrainer.model.encode(x, torch.full((x.shape[0],), x.shape[1]))
    n, t, c = out.normed.shape
    quantized = pretrainer.quantizer(out.normed.reshape(n * t, c), 1.0).quantized.reshape(n, t, -1)  # (N, T, Q)
    return {"normed": out.normed, "context": out.context, "quantized": quantized,
            "targets": pretrainer.project_q(quantized), "projected": pretrainer.final_proj(out.context)}


def assert_close(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], label: str) -> None:
    assert mine.keys() == theirs.keys()
    for key, ref in theirs.items():
        assert mine[key].shape == ref.shape, (label, key)
        assert torch.allclose(mine[key], ref, atol=1e-5, rtol=0), (label, key, float((mine[key] - ref).abs().max()))


@pytest.mark.parametrize("cfg", [SMALL, LARGE_LIKE], ids=["base-like", "lv60k-like"])
def test_cssl_to_fairseq2_to_cssl_is_exact(tmp_path: Path, cfg: ModelConfig) -> None:
    ckpt = payload_of(cfg)
    written = write_checkpoint(ckpt, tmp_path / "mine.pt", "fairseq2")
    assert written == [tmp_path / "mine.pt", tmp_path / "mine.yaml"]
    card = yaml.safe_load((tmp_path / "mine.yaml").read_text())
    assert card["model_family"] == "wav2vec2" and card["checkpoint"] == "mine.pt" and card["name"] == "mine"
    state = torch.load(tmp_path / "mine.pt", weights_only=True)["model"]
    assert all(k.startswith(("encoder_frontend.", "encoder.", "masker.", "quantizer.", "final_")) for k in state)
    assert detect(tmp_path / "mine.pt") == "fairseq2"
    back = read_checkpoint(tmp_path / "mine.pt")
    assert back["config"]["model"] == to_dict(cfg)
    assert back["config"]["data"]["normalize"] is True and back["config"]["loss"] == LOSS
    assert back["model"].keys() == ckpt["model"].keys()
    assert all(torch.equal(back["model"][k], v) for k, v in ckpt["model"].items())


def test_equal_widths_have_no_projection_and_a_trained_one_is_refused(tmp_path: Path) -> None:
    ckpt = payload_of(SAME_WIDTH, identity_projection=True)
    write_checkpoint(ckpt, tmp_path / "same.pt", "fairseq2")
    state = torch.load(tmp_path / "same.pt", weights_only=True)["model"]
    assert not any("model_dim_proj" in k for k in state)
    back = read_checkpoint(tmp_path / "same.pt")
    assert all(torch.equal(back["model"][k], v) for k, v in ckpt["model"].items())
    with pytest.raises(CheckpointError, match="projection is not the identity"):
        write_checkpoint(payload_of(SAME_WIDTH), tmp_path / "trained.pt", "fairseq2")


def test_missing_card_unknown_fields_and_other_families_are_clear_errors(tmp_path: Path) -> None:
    write_checkpoint(payload_of(SMALL), tmp_path / "m.pt", "fairseq2")
    card = yaml.safe_load((tmp_path / "m.yaml").read_text())
    (tmp_path / "m.yaml").rename(tmp_path / "kept.yaml")
    with pytest.raises(CheckpointError, match="without its asset card m.yaml"):
        read_checkpoint(tmp_path / "m.pt")
    assert read_checkpoint(tmp_path / "m.pt", SMALL)["config"]["model"] == to_dict(SMALL)  # architecture given instead
    for change, message in [({"model_family": "wav2vec2_asr"}, "model_family 'wav2vec2_asr'"),
                            ({"model_arch": "huge"}, "model_arch 'huge'"),
                            ({"model_config": {**card["model_config"], "typo_dim": 3}}, "'typo_dim' is not a fairseq2"),
                            ({"model_config": {"encoder_config": {"use_conformer": True}}}, "use_conformer=True")]:
        (tmp_path / "m.yaml").write_text(yaml.safe_dump({**card, **change}))
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(tmp_path / "m.pt")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(card))
    state = torch.load(tmp_path / "m.pt", weights_only=True)["model"]
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith("quantizer.")}}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="without a quantizer"):  # what a wav2vec2_asr model looks like
        read_checkpoint(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="needs a pretraining model with its quantizer"):
        ckpt = payload_of(SMALL)
        ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("quantizer.")}
        write_checkpoint(ckpt, tmp_path / "towers.pt", "fairseq2")


@pytest.mark.interop
@needs_fairseq2
def test_fairseq2s_own_models_read_with_equal_outputs(tmp_path: Path) -> None:
    x = waves()
    torch.save(x, tmp_path / "waves.pt")
    peer("build", tmp_path)
    for name in PEER_MODELS:
        ckpt = read_checkpoint(tmp_path / f"{name}.pt")
        assert ckpt["kind"] == "pretrain" and ckpt["imported_from"].startswith("fairseq2 checkpoint")
        assert_close(our_outputs(ckpt, x), torch.load(tmp_path / f"{name}.out.pt", weights_only=True), name)
        assert torch.equal(ckpt["model"]["model.mask_embedding"],
                           torch.load(tmp_path / f"{name}.pt", weights_only=True)["model"]["masker.temporal_mask_embed"])


@pytest.mark.interop
@needs_fairseq2
def test_fairseq2_loads_ours_with_equal_outputs_and_equal_pretraining_loss(tmp_path: Path) -> None:
    x = waves()
    torch.save(x, tmp_path / "waves.pt")
    models = {"small": payload_of(SMALL), "large_like": payload_of(LARGE_LIKE, seed=1),
              "same": payload_of(SAME_WIDTH, seed=2, identity_projection=True)}
    for name, ckpt in models.items():
        write_checkpoint(ckpt, tmp_path / f"{name}.pt", "fairseq2")
        peer("run", tmp_path, name)
        assert_close(our_outputs(ckpt, x), torch.load(tmp_path / f"{name}.out.pt", weights_only=True), name)
    # The loss: fairseq2's forward with our mask and distractors in place of its draws.
    ckpt = models["small"]
    pretrainer, _ = load_pretrainer(ckpt, "test")
    pretrainer.eval()
    frames = our_outputs(ckpt, x)["context"].shape[1]
    g = torch.Generator().manual_seed(5)
    masked = frames // 3  # the same count per utterance: fairseq2 keeps (N, M) masked frames
    mask = torch.zeros(x.shape[0], frames, dtype=torch.bool)
    for row in mask:
        row[torch.randperm(frames, generator=g)[:masked]] = True
    k = LOSS["num_distractors"]
    pick = torch.randint(0, masked - 1, (x.shape[0], masked, k), generator=g)
    distractors = pick + (pick >= torch.arange(masked)[None, :, None]).long()  # never the target itself
    torch.save({"mask": mask, "distractors": distractors}, tmp_path / "given.pt")
    peer("loss", tmp_path, "small")
    theirs = torch.load(tmp_path / "small.loss.pt", weights_only=True)
    with torch.no_grad():
        out = pretrainer.model.encode(x, torch.full((x.shape[0],), x.shape[1]), mask)
        q = pretrainer.quantizer(out.normed[mask], 1.0)
        targets = pretrainer.project_q(q.quantized)  # (N*M, F), utterance-major like mask's order
        context = pretrainer.final_proj(out.context[mask])  # (N*M, F)
        offsets = (torch.arange(x.shape[0]) * masked)[:, None, None]
        index = (distractors + offsets).reshape(-1, k)  # (N*M, K) rows of targets
        logits = losses.contrastive_logits(context, targets, index, LOSS["logit_temperature"])
        contrastive, count = losses.contrastive_loss(logits)
        diversity, _ = losses.diversity_loss(q.prob_perplexity, q.num_vars, count)
        penalty, _ = losses.feature_penalty(out.features, count)
    for name, mine in [("contrastive", contrastive), ("diversity", diversity), ("penalty", penalty)]:
        assert torch.allclose(mine, theirs[name].float(), rtol=1e-5), (name, float(mine), float(theirs[name]))
    assert torch.allclose(contrastive + 0.1 * diversity + 10.0 * penalty, theirs["aggregate"].float(), rtol=1e-5)
