"""CTC loss and decoding, error rates, freezing helpers."""

from __future__ import annotations

import math

import torch

from cssl.model import build_model
from cssl.model.ctc import ctc_loss, greedy_decode, min_frames
from cssl.score.metrics import error_rates
from cssl.train.runtime import build_optimizer
from finetune.freezing import FreezingRule, apply_freezing
from tests.test_model import small


def test_ctc_matches_torch_and_reports_infeasible_targets() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 5)
    frames = torch.tensor([6, 6, 2])
    targets = torch.tensor([[1, 2, -1], [3, 3, 3], [1, 2, 4]])
    lengths = torch.tensor([2, 3, 3])
    assert min_frames(targets, lengths).tolist() == [2, 5, 3]
    out = ctc_loss(logits, frames, targets, lengths)
    assert out.infeasible.tolist() == [False, False, True] and out.count == 2
    ref = torch.nn.functional.ctc_loss(logits.log_softmax(-1).transpose(0, 1)[:, :2], targets[:2].clamp(min=0),
                                       frames[:2], lengths[:2], reduction="sum")
    assert math.isfinite(float(out.loss)) and torch.allclose(out.loss, ref, atol=1e-4)


def test_ctc_of_a_certain_path_is_zero_and_greedy_recovers_it() -> None:
    path = [0, 1, 1, 0, 2, 0, 2]  # blank, a, a, blank, b, blank, b -> "a b b"
    logits = torch.full((1, len(path), 4), -30.0)
    logits[0, torch.arange(len(path)), torch.tensor(path)] = 30.0
    assert greedy_decode(logits, torch.tensor([len(path)])) == [[1, 2, 2]]
    out = ctc_loss(logits, torch.tensor([len(path)]), torch.tensor([[1, 2, 2]]), torch.tensor([3]))
    assert float(out.loss) < 1e-3
    assert greedy_decode(logits, torch.tensor([3])) == [[1]]  # only the valid frames count


def test_error_rates_against_hand_counts() -> None:
    rates = error_rates(["the cat sat", "a dog"], ["the bat sat down", ""])
    # words: 1 substitution + 1 insertion, then 2 deletions, over 5 reference words
    assert rates.words == 5 and rates.word_errors == 4 and math.isclose(rates.wer, 0.8)
    assert error_rates(["abc"], ["abc"]).cer == 0.0


def test_freezing_really_freezes_and_optimizer_skips_frozen() -> None:
    torch.manual_seed(0)
    model = build_model(small(), vocab_size=6)
    frozen = apply_freezing(model, feature_encoder=True, context_layers=1, whole_encoder=False)
    assert frozen[0] == "feature_extractor" and "encoder.transformer.layers.0" in frozen
    optimizer = build_optimizer(model.parameters(), 1e-2, (0.9, 0.98), 1e-8, 0.01)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    frozen_params = list(model.feature_extractor.parameters()) + list(model.encoder.transformer.layers[0].parameters())
    assert not any(id(p) in in_optimizer for p in frozen_params)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        logits, frames = model(torch.randn(2, 4000), torch.tensor([4000, 3000]))
        ctc_loss(logits, frames, torch.tensor([[1, 2], [3, -1]]), torch.tensor([2, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    for name in before:
        changed = not torch.equal(before[name], after[name])
        expect_frozen = name.startswith("feature_extractor.") or name.startswith("encoder.transformer.layers.0.")
        if expect_frozen:
            assert not changed, name
    assert not torch.equal(before["aux.weight"], after["aux.weight"])
    assert not torch.equal(before["encoder.transformer.layers.1.attention.q_proj.weight"],
                           after["encoder.transformer.layers.1.attention.q_proj.weight"])


def test_head_only_warm_up_trains_the_head_alone_then_the_configured_parts() -> None:
    model = build_model(small(), vocab_size=6).train()
    rule = FreezingRule(feature_encoder=True, context_layers=1, head_only_steps=2)
    frozen = rule.apply(model, step=0)
    assert frozen[0] == "feature_extractor"
    logits, _ = model(torch.randn(1, 4000))
    logits.sum().backward()
    assert model.aux.weight.grad is not None
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("aux."))
    assert model.encoder.transformer.layers[1].training  # towers keep their mode: dropout as in training
    rule.apply(model, step=2)  # warm-up over: the configured freezing only
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert "encoder.transformer.layers.1.attention.q_proj.weight" in trainable and "mask_embedding" in trainable
    assert not any(n.startswith(("feature_extractor.", "encoder.transformer.layers.0.")) for n in trainable)
