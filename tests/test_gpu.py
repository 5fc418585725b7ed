"""The CUDA path: training steps of both stages, bf16 autocast, and equality with the CPU path.

Run with ``make test-gpu`` on a machine with a CUDA device; skipped elsewhere.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from cssl.model import build_model, build_pretrainer
from cssl.model.ctc import ctc_loss
from cssl.utils.config import load_config, preset
from tests.signals import tone_corpus, tone_language_corpus, tone_words
from tests.test_model import small

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def _exact_float32():
    """Full fp32 matrix products (no TF32) for the equality checks."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_pretraining_forward_and_gradients_equal_the_cpu_path() -> None:
    torch.manual_seed(0)
    cfg = small()  # no dropout: its masks differ between devices by design
    cfg.context.dropout = cfg.context.attention_dropout = cfg.context.dropout_input = cfg.dropout_features = 0.0
    cpu = build_pretrainer(cfg, num_distractors=5).train()
    gpu = copy.deepcopy(cpu).cuda()
    waves, lengths, seeds = torch.randn(3, 16000), torch.tensor([16000, 12000, 9000]), [11, 12, 13]
    a = cpu(waves, lengths, seeds, tau=1.5)  # masks, distractors and Gumbel noise: the same on both devices
    b = gpu(waves.cuda(), lengths.cuda(), seeds, tau=1.5)
    assert a.count == b.count
    assert torch.allclose(a.contrastive, b.contrastive.cpu(), rtol=1e-4)
    assert torch.allclose(a.diversity, b.diversity.cpu(), rtol=1e-4)
    (a.contrastive + a.diversity).backward()
    (b.contrastive + b.diversity).backward()
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad.cpu(), atol=1e-4, rtol=1e-3), name


def test_ctc_logits_equal_the_cpu_path_and_bf16_stays_close() -> None:
    torch.manual_seed(0)
    cpu = build_model(small(), vocab_size=9).eval()
    gpu = copy.deepcopy(cpu).cuda()
    waves, lengths = torch.randn(2, 12000), torch.tensor([12000, 8000])
    with torch.no_grad():
        a, fa = cpu(waves, lengths)
        b, fb = gpu(waves.cuda(), lengths.cuda())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            c, _ = gpu(waves.cuda(), lengths.cuda())
    assert torch.equal(fa, fb.cpu())
    assert torch.allclose(a, b.cpu(), atol=1e-4, rtol=1e-4)
    assert c.dtype == torch.bfloat16 and torch.allclose(a, c.float().cpu(), atol=0.1, rtol=0.05)
    loss = ctc_loss(c.float(), fb, torch.tensor([[1, 2, 3], [4, 5, -1]]).cuda(), torch.tensor([3, 2]).cuda())
    assert torch.isfinite(loss.loss)


def test_pretraining_and_finetuning_runs_on_the_gpu_in_bf16(tmp_path: Path) -> None:
    from finetune.config import FinetuneConfig
    from finetune.train import main as finetune
    from pretrain.config import PretrainConfig
    from pretrain.train import main as pretrain

    corpus = tone_corpus(tmp_path / "tones", 8, seconds=(1.0, 2.0))
    run = tmp_path / "pretrain"
    last = pretrain(load_config(PretrainConfig, preset("pretrain/tiny.yaml"), [
        f"data.manifest={corpus}", f"out_dir={run}", "optim.max_steps=4", "save_every=2", "data.num_workers=0",
        "mixed_precision=bf16", "optim.schedule.warmup_steps=1"]))
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["step"] == 4 and ckpt["config"]["mixed_precision"] == "bf16"
    labeled = tone_language_corpus(tmp_path / "lang", {"train": 12, "dev": 4}, tone_words(10))
    best = finetune(load_config(FinetuneConfig, preset("finetune/tiny.yaml"), [
        f"data.manifest={labeled['train']}", f"data.valid_manifest={labeled['dev']}", f"init={last}",
        f"out_dir={tmp_path / 'finetune'}", "optim.max_steps=4", "valid_every=2", "data.num_workers=0",
        "mixed_precision=bf16", "freeze.encoder_steps=2", "reinit_layers=0"]))
    assert torch.load(best, weights_only=True)["kind"] == "finetune"
