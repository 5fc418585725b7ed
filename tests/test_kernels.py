"""The CPU-tuned kernels and stock PyTorch compute the same model (cssl.kernels.switch)."""

from __future__ import annotations

import pytest
import torch

from cssl.kernels.dropout import dropout
from cssl.kernels.switch import cpu_kernels, use_kernels
from cssl.model import build_model, build_pretrainer
from tests.test_model import small


@pytest.mark.parametrize("norm", ["group_norm", "layer_norm"])
def test_both_kernel_sets_give_the_same_outputs_and_gradients(norm: str) -> None:
    torch.manual_seed(0)
    cfg = small(norm=norm, bias=norm == "layer_norm")
    cfg.context.dropout = cfg.context.attention_dropout = cfg.context.dropout_input = 0.0
    model = build_model(cfg, vocab_size=7).train()
    waves = torch.randn(3, 9000)
    lengths = torch.tensor([9000, 7000, 3100])  # padded rows: the masked statistics paths too
    results = {}
    for kind in ("cpu", "stock"):
        model.zero_grad()
        with use_kernels(kind):
            logits, frames = model(waves, lengths)
            (logits * torch.linspace(-1, 1, logits.shape[-1])).sum().backward()
        results[kind] = (logits.detach(), frames,
                         {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    (a, fa, ga), (b, fb, gb) = results["cpu"], results["stock"]
    assert torch.equal(fa, fb)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert ga.keys() == gb.keys() and len(ga) > 20
    for name in ga:
        assert torch.allclose(ga[name], gb[name], atol=1e-5, rtol=1e-3), name


def test_pretraining_losses_agree_between_kernel_sets() -> None:
    torch.manual_seed(0)
    cfg = small()
    cfg.context.dropout = cfg.context.attention_dropout = cfg.context.dropout_input = 0.0
    cfg.dropout_features = 0.0
    model = build_pretrainer(cfg, num_distractors=5).eval()  # eval: no Gumbel noise, no dropout
    waves, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    with use_kernels("cpu"):
        a = model(waves, lengths, [3, 4], tau=1.0)
    with use_kernels("stock"):
        b = model(waves, lengths, [3, 4], tau=1.0)
    assert a.count == b.count
    assert torch.allclose(a.contrastive, b.contrastive, rtol=1e-4) and torch.allclose(a.diversity, b.diversity)


def test_dropout_sides_keep_the_same_share_and_the_switch_restores() -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000)
    for kind in ("cpu", "stock"):
        with use_kernels(kind):
            y = dropout(x, 0.3)
        assert abs(float((y == 0).float().mean()) - 0.3) < 0.01, kind
        assert abs(float(y.mean()) - 1.0) < 0.01, kind  # inverted dropout keeps the expectation
    assert cpu_kernels(torch.device("cpu")) and not cpu_kernels(torch.device("meta"))
    with pytest.raises(ValueError, match="kernels must be"):
        with use_kernels("fast"):  # type: ignore[arg-type]
            pass
