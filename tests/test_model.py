from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from cssl.model import ModelConfig, build_model, build_pretrainer
from cssl.model.config import ContextConfig, FeatureEncoderConfig, MaskConfig, QuantizerConfig
from cssl.model.losses import contrastive_accuracy, contrastive_logits, contrastive_loss, same_rows, take_rows
from cssl.model.masking import batch_span_mask, sample_distractors
from cssl.model.quantizer import GumbelQuantizer

CONV = [(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 3, 2), (32, 2, 2), (32, 2, 2)]


def small(norm: str = "group_norm", pre_ln: bool = False, bias: bool = False) -> ModelConfig:
    return ModelConfig(
        feature_encoder=FeatureEncoderConfig(conv_layers=list(CONV), norm=norm, bias=bias),
        context=ContextConfig(embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_kernel=16,
                              pos_conv_groups=4, layer_norm_first=pre_ln, layer_drop=0.0),
        quantizer=QuantizerConfig(groups=2, entries=8, dim=32),
        mask=MaskConfig(prob=0.3, span=3, min_spans=2),
        final_dim=32,
    )


def torchaudio_twin(norm: str, pre_ln: bool, bias: bool) -> torch.nn.Module:
    return torchaudio.models.wav2vec2_model(
        extractor_mode=norm, extractor_conv_layer_config=list(CONV), extractor_conv_bias=bias,
        encoder_embed_dim=64, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=4, encoder_attention_dropout=0.0,
        encoder_ff_interm_features=128, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
        encoder_layer_norm_first=pre_ln, encoder_layer_drop=0.0, aux_num_out=None,
    )


@pytest.mark.parametrize("norm, pre_ln, bias", [("group_norm", False, False), ("layer_norm", True, True)])
def test_same_outputs_as_torchaudio_on_same_weights(norm: str, pre_ln: bool, bias: bool) -> None:
    torch.manual_seed(0)
    ref = torchaudio_twin(norm, pre_ln, bias).eval()
    ours = build_model(small(norm, pre_ln, bias)).eval()
    result = ours.load_state_dict(ref.state_dict(), strict=False)
    assert result.missing_keys == ["mask_embedding"] and result.unexpected_keys == []
    x = torch.randn(3, 8000)
    lengths = torch.tensor([8000, 8000, 8000])
    with torch.no_grad():
        a, la = ref(x, lengths)
        b, lb = ours(x, lengths)
        assert torch.equal(la, lb)
        assert torch.allclose(a, b, atol=1e-5)
        # the towers separately, as torchaudio exposes them
        fa, _ = ref.feature_extractor(x, None)
        fb, _ = ours.feature_extractor(x, None)
        assert torch.allclose(fa, fb, atol=1e-5)
        assert torch.allclose(ref.encoder(fa), ours.encode(x).context, atol=1e-5)


def test_layer_norm_variant_matches_torchaudio_on_padded_batches() -> None:
    torch.manual_seed(0)
    ref = torchaudio_twin("layer_norm", True, True).eval()
    ours = build_model(small("layer_norm", True, True)).eval()
    ours.load_state_dict(ref.state_dict(), strict=False)
    x = torch.randn(2, 8000)
    lengths = torch.tensor([8000, 5000])
    with torch.no_grad():
        a, la = ref(x, lengths)
        b, _ = ours(x, lengths)
    assert torch.allclose(a[1, : la[1]], b[1, : la[1]], atol=1e-5)


@pytest.mark.parametrize("n", [0, 1, 399, 400, 401, 719, 720, 1000, 4321, 16000])
def test_output_lengths_match_real_conv_outputs(n: int) -> None:
    model = build_model(small()).eval()
    fe = model.feature_extractor
    if n >= fe.receptive_field:
        with torch.no_grad():
            feats, lengths = fe(torch.randn(1, n), torch.tensor([n]))
        assert feats.shape[1] == int(lengths[0]) == int(fe.output_lengths(torch.tensor([n]))[0])
    expected = n
    for _, k, s in CONV:
        expected = max(0, (expected - k) // s + 1)
    assert int(fe.output_lengths(torch.tensor([n]))[0]) == expected
    assert fe.stride == 320 and fe.receptive_field == 400


@pytest.mark.parametrize("norm, pre_ln", [("group_norm", False), ("layer_norm", True)])
def test_padded_batch_equals_one_by_one(norm: str, pre_ln: bool) -> None:
    torch.manual_seed(0)
    model = build_model(small(norm, pre_ln)).eval()
    waves = [torch.randn(n) for n in (8000, 5300, 2100)]
    batch = torch.zeros(3, 8000)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    lengths = torch.tensor([len(w) for w in waves])
    with torch.no_grad():
        out, out_len = model(batch, lengths)
        for i, w in enumerate(waves):
            single, single_len = model(w[None], torch.tensor([len(w)]))
            n = int(single_len[0])
            assert n == int(out_len[i])
            assert torch.allclose(out[i, :n], single[0, :n], atol=1e-4), (i, (out[i, :n] - single[0, :n]).abs().max())


def test_zero_length_input_is_handled() -> None:
    model = build_model(small()).eval()
    with torch.no_grad():
        out, lengths = model(torch.randn(2, 1000), torch.tensor([1000, 0]))
        assert lengths.tolist() == [2, 0] and torch.isfinite(out).all()
        out, lengths = model(torch.zeros(1, 0), torch.tensor([0]))
        assert lengths.tolist() == [0] and torch.isfinite(out).all()
        out, lengths = model(torch.randn(1, 100))  # shorter than the receptive field, no lengths given
        assert lengths.tolist() == [0]


def test_masks_never_cover_padding_and_respect_min_spans() -> None:
    lengths = torch.tensor([50, 20, 7, 0])
    mask = batch_span_mask(lengths, 50, prob=0.3, span=5, min_spans=2, seeds=torch.tensor([1, 2, 3, 4]))
    for row, n in zip(mask, lengths.tolist()):
        assert not row[n:].any()
    assert mask[1].sum() >= 5 and mask[0].sum() >= 10
    assert 0 < mask[2].sum() < 7  # short utterance: masked, but not entirely
    assert mask[3].sum() == 0
    again = batch_span_mask(lengths, 50, 0.3, 5, 2, torch.tensor([1, 2, 3, 4]))
    assert torch.equal(mask, again)
    # An utterance's mask depends on its seed alone, not on the batch around it.
    alone = batch_span_mask(lengths[1:2], 30, 0.3, 5, 2, torch.tensor([2]))
    assert torch.equal(alone[0], mask[1, :30])


def test_span_masks_have_fairseqs_statistics() -> None:
    """prob * T / span spans of ``span`` frames, starts uniform over the row, overlaps merged."""
    rows, length, prob, span = 4000, 200, 0.3, 5
    mask = batch_span_mask(torch.full((rows,), length), length, prob, span, 0, torch.arange(rows) + 10_000)
    starts = mask & ~torch.nn.functional.pad(mask, (1, 0))[:, :-1]  # first frame of each merged run
    # Without overlaps 12 spans of 5 frames would cover 30%; starts drawn without replacement
    # from 196 places overlap, so the expected share is 1 - E[frames left] / T (inclusion-exclusion).
    expected_spans = prob * length / span  # 12 exactly: the rounding term u never adds one here
    frame_hit = 1 - torch.tensor([_uncovered(t, length, span, int(expected_spans)) for t in range(length)])
    assert float(mask.float().mean()) == pytest.approx(float(frame_hit.mean()), rel=0.02)
    per_position = mask.float().mean(dim=0)  # covered share of each frame, over rows
    assert torch.allclose(per_position, frame_hit.float(), atol=0.03)
    assert float(starts.sum(dim=1).float().mean()) <= expected_spans


def _uncovered(t: int, length: int, span: int, count: int) -> float:
    """P(frame t is in no span) when ``count`` starts are drawn without replacement from length - span + 1."""
    room = length - span + 1
    covering = min(t, room - 1) - max(0, t - span + 1) + 1  # starts whose span covers t
    p = 1.0
    for i in range(count):
        p *= (room - covering - i) / (room - i)
    return p


def test_distractors_never_equal_target_and_stay_in_utterance() -> None:
    mask = torch.zeros(3, 40, dtype=torch.bool)
    mask[0, 3:13] = True
    mask[1, :2] = True
    mask[2, 5:6] = True  # a single masked frame: no same-utterance distractor
    index, usable = sample_distractors(mask, num=20, cross=4, seeds=torch.tensor([5, 6, 7]))
    owner = torch.tensor([0] * 10 + [1] * 2 + [2])
    for i in range(13):
        assert (index[i] != i).all()
        if usable[i]:
            assert (owner[index[i, :20]] == owner[i]).all()
    assert usable.tolist() == [True] * 12 + [False]
    assert ((index >= 0) & (index < 13)).all()
    # Same-utterance draws are uniform over the other frames: 10 frames x 20 draws from 9 candidates.
    hits = torch.bincount((index[:10, :20] - 0).flatten(), minlength=10).float()
    assert hits.min() > 0 and hits.max() < 3 * hits.mean()
    # An utterance's distractors depend on its seed alone: row 0 alone draws the same same-utterance ones.
    alone, _ = sample_distractors(mask[:1], num=20, cross=0, seeds=torch.tensor([5]))
    assert torch.equal(alone, index[:10, :20])


def test_contrastive_loss_at_init_is_near_log_k_plus_1() -> None:
    torch.manual_seed(0)
    for k in (10, 50):
        model = build_pretrainer(small(), num_distractors=k).train()
        total, count = 0.0, 0
        for batch in range(6):  # one small batch scores ~45 frames: average a few
            seeds = [10 * batch + i for i in range(4)]
            out = model(torch.randn(4, 16000), torch.tensor([16000, 16000, 12000, 9000]), seeds, tau=2.0)
            total, count = total + float(out.contrastive.detach()), count + out.count
        # An untrained model cannot tell targets from distractors: about chance, log(K+1) (a random
        # projection sits a little above it: 5-15% here, with either sampler).
        assert abs(total / count - math.log(k + 1)) < 0.2 * math.log(k + 1), (k, total / count)
        groups = small().quantizer.groups  # perplexity summed over codebooks: at least 1 per codebook
        assert groups <= float(out.prob_perplexity) <= out.num_vars
        assert groups <= float(out.code_perplexity) <= out.num_vars


def test_loss_identities_on_known_values() -> None:
    targets = torch.eye(4)
    logits = contrastive_logits(targets.clone(), targets, torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1]]), 0.1)
    assert torch.allclose(logits[:, 0], torch.full((4,), 10.0)) and torch.allclose(logits[:, 1:], torch.zeros(4, 2))
    loss, count = contrastive_loss(logits)
    assert count == 4 and math.isclose(float(loss), 4 * (math.log(math.exp(10) + 2) - 10), abs_tol=2e-6)
    assert int(contrastive_accuracy(logits)[0]) == 4
    same = contrastive_logits(targets, targets, torch.tensor([[0, 1], [0, 2], [0, 1], [0, 1]]), 0.1)
    assert same[0, 1] == float("-inf")  # a distractor identical to the target is excluded


def test_contrastive_logits_equal_a_broadcast_cosine_and_flag_exactly_the_repeated_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    n, k, f = 300, 30, 48
    codes = torch.randn(6, f, generator=gen)
    targets = codes[torch.randint(0, 6, (n,), generator=gen)]  # many frames share a code
    targets[::5] = torch.randn(len(targets[::5]), f, generator=gen)
    targets[7], targets[8] = codes[0] * 0.0, -codes[0] * 0.0  # 0.0 and -0.0: equal as numbers
    targets[9, 0] = float("nan")  # NaN equals nothing, itself included
    index = torch.randint(0, n, (n, k), generator=gen)
    index[7, 0], index[8, 0], index[9, 0] = 8, 7, 9
    want_same = (targets[index] == targets[:, None]).all(dim=-1)  # (N, K), the plain definition
    assert torch.equal(same_rows(targets, index), want_same)
    assert want_same[7, 0] and want_same[8, 0] and not want_same[9, 0] and want_same.sum() > n

    context = torch.randn(n, f, generator=gen)
    got = contrastive_logits(context, targets, index, 0.1)
    candidates = torch.cat([targets[:, None], targets[index]], dim=1)  # (N, 1 + K, F)
    want = torch.nn.functional.cosine_similarity(context[:, None], candidates, dim=-1) / 0.1
    want = want.masked_fill(torch.nn.functional.pad(want_same, (1, 0), value=False), float("-inf"))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_contrastive_gradients_repeat_bit_for_bit_on_several_threads() -> None:
    """Distractors repeat rows of the targets; their gradients must sum in the same order every time
    (the backward of ``targets[index]`` on CPU races threads with atomic adds: about 1 run in 7 here)."""
    gen = torch.Generator().manual_seed(0)
    n, k, f = 400, 20, 64
    context, targets = torch.randn(n, f, generator=gen), torch.randn(n, f, generator=gen)
    index = torch.randint(0, n, (n, k), generator=gen)

    def gradient() -> torch.Tensor:
        t = targets.clone().requires_grad_()
        contrastive_loss(contrastive_logits(context, t, index, 0.1))[0].backward()
        return t.grad

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first = gradient()
        assert all(torch.equal(first, gradient()) for _ in range(60))
    finally:
        torch.set_num_threads(threads)
    t = targets.clone().requires_grad_()  # the same values as plain indexing
    torch.testing.assert_close(contrastive_logits(context, t, index, 0.1),
                               contrastive_logits(context, targets, index, 0.1))
    assert torch.equal(take_rows(targets, index), targets[index])


def test_quantizer_perplexity_bounds_and_straight_through() -> None:
    torch.manual_seed(0)
    q = GumbelQuantizer(16, groups=2, entries=8, dim=32).train()
    x = torch.randn(200, 16, requires_grad=True)
    out = q(x, tau=1.0)
    assert out.quantized.shape == (200, 32) and out.codes.shape == (200, 2)
    assert 2 <= float(out.prob_perplexity.detach()) <= 16 and 2 <= float(out.code_perplexity) <= 16  # G=2, G*V=16
    one_code = q(torch.zeros(200, 16), tau=1.0)  # identical inputs pick one entry per codebook: the lower bound
    assert float(one_code.code_perplexity) == pytest.approx(2.0)
    out.quantized.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # one entry per codebook: each half of a quantized vector is a codebook row
    rows = q.codebook.view(2, 8, 16)
    q.eval()
    hard = q(x.detach(), tau=1.0)
    for g in range(2):
        assert torch.allclose(hard.quantized[:, 16 * g : 16 * (g + 1)], rows[g, hard.codes[:, g]])


def test_feature_gradient_scaling() -> None:
    torch.manual_seed(0)
    grads = []
    for scale in (1.0, 0.1):
        cfg = small()
        cfg.feature_grad_scale = scale
        torch.manual_seed(0)
        model = build_model(cfg).train()
        model.encode(torch.randn(2, 4000)).context.sum().backward()
        grads.append(model.feature_extractor.conv_layers[0].conv.weight.grad.clone())
    assert torch.allclose(grads[1], 0.1 * grads[0], rtol=1e-3, atol=1e-7)


def test_health_skips_non_finite_losses_then_stops() -> None:
    from cssl.train.health import Health, NonFiniteLoss

    health = Health(max_nonfinite=3)
    assert health.check_loss(1.0, 0)
    assert not health.check_loss(float("nan"), 1) and not health.check_loss(float("inf"), 2)
    assert health.check_loss(2.0, 3) and health.nonfinite_streak == 0 and health.nonfinite_total == 2
    health.check_loss(float("nan"), 4)
    health.check_loss(float("nan"), 5)
    with pytest.raises(NonFiniteLoss, match="3 updates in a row"):
        health.check_loss(float("nan"), 6)


def test_health_warns_once_on_collapse_and_chance() -> None:
    from cssl.train.health import Health

    health = Health()
    assert health.check_pretraining(5, 10, math.log(11), 10, 3.0, 64, 2) == []  # still warming up
    warnings = health.check_pretraining(20, 10, math.log(11), 10, 3.0, 64, 2)
    assert any("collapse" in w for w in warnings) and any("chance" in w for w in warnings)
    assert health.check_pretraining(30, 10, math.log(11), 10, 3.0, 64, 2) == []  # once each
    leaving = Health()
    for step, loss in [(10, 2.40), (14, 2.2), (18, 2.0), (22, 2.39)]:  # one noisy batch back at chance
        assert not any("chance" in w for w in leaving.check_pretraining(step, 10, loss, 10, 40.0, 64, 2))
    assert any("near 0" in w for w in Health().check_pretraining(30, 10, 1e-5, 10, 40.0, 64, 2))


def test_group_norm_moments_from_input_windows_equal_moments_of_the_output() -> None:
    from cssl.kernels.block_conv import block_conv
    from cssl.model.feature_encoder import frame_moments, window_moments

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 6, 10, stride=5, bias=True)
    x = torch.randn(3, 400, 1) + 0.5  # (B, T_in, 1), a DC offset
    y = block_conv(x, conv.weight, conv.bias, 5)  # (B, 80, 6)
    frames = 79  # (400 - 10) // 5 + 1
    lengths = torch.tensor([79, 40, 3])
    valid = (torch.arange(80) < lengths[:, None]).unsqueeze(-1)  # (B, 80, 1)
    for mask in (None, valid):
        want_mean, want_var = frame_moments(y.double(), frames, mask)
        got_mean, got_var = window_moments(x, conv, frames, mask)
        torch.testing.assert_close(got_mean, want_mean.float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_var, want_var.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernels", ["cpu", "stock"])
@pytest.mark.parametrize("norm", ["group_norm", "layer_norm"])
def test_local_tower_without_gradient_overwrites_only_its_own_tensors(norm: str, kernels: str) -> None:
    from cssl.kernels.switch import use_kernels
    from cssl.model.feature_encoder import build_feature_encoder

    torch.manual_seed(0)
    tower = build_feature_encoder(small(norm).feature_encoder)
    waves = torch.randn(3, 4000)
    lengths = torch.tensor([4000, 2500, 900])
    kept = waves.clone()
    with use_kernels(kernels):
        want, want_lengths = tower(waves, lengths)  # trainable: a graph, fresh tensors
        assert want.requires_grad
        with torch.no_grad():  # inference: the norm and GELU run in place
            plain, _ = tower(waves, lengths)
        tower.requires_grad_(False)  # frozen, as fine-tuning leaves it: in place too
        frozen, frozen_lengths = tower(waves, lengths)
    assert not frozen.requires_grad
    torch.testing.assert_close(plain, want.detach(), rtol=0, atol=0)
    torch.testing.assert_close(frozen, want.detach(), rtol=0, atol=0)
    assert torch.equal(frozen_lengths, want_lengths)
    assert torch.equal(waves, kept)  # the caller's waveform is never written


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    import dataclasses

    from cssl.model import ModelConfig, build_pretrainer
    from cssl.utils.config import load_config, preset

    cfg = load_config(ModelConfig, preset("model/tiny.yaml"))
    grads, kept = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_pretrainer(dataclasses.replace(cfg, checkpoint_activations=checkpointing), num_distractors=5)
        model.train()  # dropout on: the recomputation must draw the same masks
        waves = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            out = model(waves, torch.tensor([16000, 12000]), seeds=[3, 4], tau=2.0)
        (out.contrastive + out.diversity).backward()
        kept.append(sum(saved))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert kept[1] < 0.8 * kept[0], kept  # the layers' activations were not kept for backward
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6, rtol=1e-5), name
