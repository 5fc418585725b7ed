"""Checkpoint interop against the peers' own implementations, on small random models they build.

transformers (Wav2Vec2ForPreTraining / -Model / -ForCTC) and torchaudio (wav2vec2_model,
its fairseq and HF importers) are the references: encoder outputs and CTC logits agree to
1e-5 (eval mode, unpadded inputs: the peers' first group norm also spans padding), and the
pretraining loss equals transformers' on the same masks and negatives.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from cssl.convert import read_checkpoint, write_checkpoint  # noqa: E402
from cssl.convert.loading import load_model, load_pretrainer  # noqa: E402
from cssl.convert.payload import finetune_payload, pretrain_payload  # noqa: E402
from cssl.model import (  # noqa: E402
    ModelConfig,
    build_model,
    build_pretrainer,
    losses,  # noqa: E402
)
from cssl.model.config import ContextConfig, FeatureEncoderConfig, QuantizerConfig  # noqa: E402
from cssl.text.vocab import Vocabulary  # noqa: E402
from cssl.train.checkpoint import CheckpointError  # noqa: E402
from cssl.utils.config import to_dict  # noqa: E402

SMALL = ModelConfig(
    feature_encoder=FeatureEncoderConfig(conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2)]),
    context=ContextConfig(embed_dim=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16, pos_conv_groups=2),
    quantizer=QuantizerConfig(groups=2, entries=8, dim=16),
    final_dim=8,
)
LARGE_LIKE = ModelConfig(
    feature_encoder=FeatureEncoderConfig(conv_layers=[(16, 10, 5), (16, 3, 2)], norm="layer_norm", bias=True),
    context=ContextConfig(embed_dim=32, num_layers=2, num_heads=4, ffn_dim=48, layer_norm_first=True,
                          pos_conv_kernel=8, pos_conv_groups=4),
    quantizer=QuantizerConfig(groups=2, entries=4, dim=8),
    final_dim=12,
)


def hf_config(cfg: ModelConfig, vocab_size: int = 32):
    from cssl.convert.hf import transformers_config

    return transformers_config(cfg, vocab_size=vocab_size)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (norms and biases included), so that no mapping error hides behind init values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.dim() == 1 and p.shape[0] > 1 else 0.0))
    return module.eval()


def waves(batch: int = 2, samples: int = 4000, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def our_encoder(model, x: torch.Tensor) -> torch.Tensor:
    lengths = torch.full((x.shape[0],), x.shape[1])
    return model.encode(x, lengths).context


def hf_pretraining_loss(hf, x: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    return hf(x, mask_time_indices=mask, sampled_negative_indices=negatives).loss


def our_pretraining_loss(pretrainer, x: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor,
                         temperature: float = 0.1, diversity_weight: float = 0.1) -> torch.Tensor:
    """Our loss functions on the masks and negatives given (negatives: HF's flat (B, T, K) indices)."""
    lengths = torch.full((x.shape[0],), x.shape[1])
    out = pretrainer.model.encode(x, lengths, mask)
    q = pretrainer.quantizer(out.normed[mask], 1.0)
    targets = pretrainer.project_q(q.quantized)  # (N, F)
    context = pretrainer.final_proj(out.context[mask])  # (N, F)
    row = torch.full((mask.numel(),), -1, dtype=torch.long)
    row[mask.flatten()] = torch.arange(int(mask.sum()))  # flat frame -> masked row
    index = row[negatives[mask]]  # (N, K)
    assert (index >= 0).all()  # HF draws negatives among masked frames
    logits = losses.contrastive_logits(context, targets, index, temperature)
    contrastive, count = losses.contrastive_loss(logits)
    # In eval mode transformers' perplexity is that of the hard codes (soft in training, like ours).
    diversity, _ = losses.diversity_loss(q.code_perplexity, q.num_vars, count)
    return contrastive + diversity_weight * diversity


def masks_and_negatives(cfg: ModelConfig, batch: int, frames: int, seed: int = 3):
    import numpy as np
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    np.random.seed(seed)
    mask = _compute_mask_indices((batch, frames), mask_prob=0.5, mask_length=2, min_masks=2)
    negatives = _sample_negative_indices((batch, frames), 5, mask_time_indices=mask)
    return torch.from_numpy(mask), torch.from_numpy(negatives).long()


@pytest.mark.parametrize("cfg", [SMALL, LARGE_LIKE], ids=["base-like", "large-like"])
def test_hf_pretraining_model_reads_with_equal_encoder_and_equal_loss(tmp_path: Path, cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    hf = randomize(transformers.Wav2Vec2ForPreTraining(hf_config(cfg)))
    hf.save_pretrained(tmp_path / "hf")
    ckpt = read_checkpoint(tmp_path / "hf")
    assert ckpt["kind"] == "pretrain"
    pretrainer, got_cfg = load_pretrainer(ckpt, "hf")
    pretrainer.eval()
    assert got_cfg.feature_encoder == cfg.feature_encoder and got_cfg.context == cfg.context
    assert got_cfg.quantizer.groups == cfg.quantizer.groups and got_cfg.final_dim == cfg.final_dim
    x = waves()
    with torch.no_grad():
        ref = hf.wav2vec2(x).last_hidden_state
        ours = our_encoder(pretrainer.model, x)
        assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
        frames = ref.shape[1]
        mask, negatives = masks_and_negatives(cfg, 2, frames)
        theirs = hf_pretraining_loss(hf, x, mask, negatives)
        mine = our_pretraining_loss(pretrainer, x, mask, negatives)
    assert torch.allclose(mine, theirs, rtol=1e-5), (float(mine), float(theirs))
    assert torch.equal(pretrainer.model.mask_embedding, hf.wav2vec2.masked_spec_embed.detach())
    assert torch.equal(pretrainer.quantizer.codebook, hf.quantizer.codevectors.detach())


def test_ours_written_for_hf_loads_with_from_pretrained_equal_and_round_trips_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pretrainer = randomize(build_pretrainer(SMALL))
    ckpt = pretrain_payload(SMALL, pretrainer.state_dict(), normalize=True, source="test",
                            loss={"num_distractors": 5, "logit_temperature": 0.1, "diversity_weight": 0.1})
    write_checkpoint(ckpt, tmp_path / "hf", "hf")
    hf = transformers.Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "hf").eval()
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path / "hf")
    assert fe.do_normalize is True
    x = waves()
    with torch.no_grad():
        assert torch.allclose(our_encoder(pretrainer.model, x), hf.wav2vec2(x).last_hidden_state, atol=1e-5)
        mask, negatives = masks_and_negatives(SMALL, 2, hf.wav2vec2(x).last_hidden_state.shape[1])
        assert torch.allclose(our_pretraining_loss(pretrainer, x, mask, negatives),
                              hf_pretraining_loss(hf, x, mask, negatives), rtol=1e-5)
    back = read_checkpoint(tmp_path / "hf")
    assert back["config"]["model"] == to_dict(SMALL)
    assert back["model"].keys() == ckpt["model"].keys()
    assert all(torch.equal(back["model"][k], v) for k, v in ckpt["model"].items())


def ctc_vocab() -> Vocabulary:
    return Vocabulary(("<blank>", "<unk>", "|", "A", "B", "C", "'"))


def test_ctc_model_both_ways_equal_logits_vocab_and_temperature(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vocab = ctc_vocab()
    model = randomize(build_model(SMALL, vocab_size=len(vocab)))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = finetune_payload(SMALL, state, vocab, normalize=False, source="test", temperature=1.7)
    write_checkpoint(ckpt, tmp_path / "hf", "hf")
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "hf").eval()
    processor = transformers.Wav2Vec2Processor.from_pretrained(tmp_path / "hf")
    x = waves()
    with torch.no_grad():
        ours, _ = model(x)
        theirs = hf(x).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    ids = torch.tensor([[3, 3, 0, 4, 2, 5, 6]])
    assert processor.batch_decode(ids)[0] == vocab.decode([3, 4, 2, 5, 6])  # "AB C'"
    back = load_model(tmp_path / "hf")
    assert back.vocab == vocab and back.temperature == pytest.approx(1.7) and back.normalize is False
    assert all(torch.equal(back.model.state_dict()[k], v) for k, v in model.state_dict().items())


def test_hf_ctc_model_with_its_own_vocabulary_order_gives_permuted_logits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    symbols = ["<pad>", "<s>", "</s>", "<unk>", "|", "e", "t", "a"]  # lower case, blank first as in HF hub models
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))
    hf = randomize(transformers.Wav2Vec2ForCTC(hf_config(SMALL, vocab_size=len(symbols))))
    hf.save_pretrained(tmp_path / "hf")
    loaded = load_model(tmp_path / "hf")
    loaded.model.eval()
    assert loaded.vocab.symbols[:3] == ("<blank>", "<unk>", "|")
    assert set(loaded.vocab.symbols[3:]) == {"<s>", "</s>", "E", "T", "A"}
    x = waves()
    with torch.no_grad():
        ours, _ = loaded.model(x)
        theirs = hf(x).logits
    for our_id, symbol in enumerate(loaded.vocab.symbols):
        peer = {"<blank>": "<pad>"}.get(symbol, symbol if len(symbol) > 1 else symbol.lower())
        assert torch.allclose(ours[..., our_id], theirs[..., symbols.index(peer)], atol=1e-5), symbol
    assert torch.equal(loaded.model.mask_embedding, hf.wav2vec2.masked_spec_embed.detach())


def test_torchaudio_state_dict_out_loads_in_torchaudio_and_back(tmp_path: Path) -> None:
    from torchaudio.models import wav2vec2_model

    torch.manual_seed(0)
    vocab = ctc_vocab()
    model = randomize(build_model(LARGE_LIKE, vocab_size=len(vocab)))
    ckpt = finetune_payload(LARGE_LIKE, {f"model.{k}": v for k, v in model.state_dict().items()}, vocab, False, "t")
    write_checkpoint(ckpt, tmp_path / "ta.pt", "torchaudio")
    kwargs = json.loads((tmp_path / "ta.json").read_text())["wav2vec2_model"]
    ta = wav2vec2_model(**kwargs)
    ta.load_state_dict(torch.load(tmp_path / "ta.pt", weights_only=True))  # strict: names and shapes all agree
    ta.eval()
    x = waves()
    with torch.no_grad():
        assert torch.allclose(model(x)[0], ta(x)[0], atol=1e-5)
    back = load_model(tmp_path / "ta.pt")
    assert back.vocab == vocab and back.config.context == LARGE_LIKE.context
    state = back.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items() if k != "mask_embedding")


def test_hf_mapping_agrees_with_torchaudios_own_hf_importer(tmp_path: Path) -> None:
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    torch.manual_seed(0)
    hf = randomize(transformers.Wav2Vec2ForPreTraining(hf_config(SMALL)))
    hf.save_pretrained(tmp_path / "hf")
    reference = import_huggingface_model(hf.wav2vec2).state_dict()
    ours = load_model(tmp_path / "hf").model.state_dict()
    assert set(reference) == set(ours) - {"mask_embedding"}
    assert all(torch.equal(ours[k], v) for k, v in reference.items())


def fairseq_state(cfg: ModelConfig, seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """A random fairseq Wav2Vec2Model state dict under fairseq's own parameter names (group-norm local tower)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    fe, ctx, q = cfg.feature_encoder, cfg.context, cfg.quantizer
    s: dict[str, torch.Tensor] = {"mask_emb": r(ctx.embed_dim)}
    cin = 1
    for i, (c, k, _) in enumerate(fe.conv_layers):
        s[f"feature_extractor.conv_layers.{i}.0.weight"] = r(c, cin, k)
        cin = c
    s["feature_extractor.conv_layers.0.2.weight"], s["feature_extractor.conv_layers.0.2.bias"] = 1 + r(cin), r(cin)
    s["layer_norm.weight"], s["layer_norm.bias"] = 1 + r(cin), r(cin)
    s["post_extract_proj.weight"], s["post_extract_proj.bias"] = r(ctx.embed_dim, cin), r(ctx.embed_dim)
    s["encoder.pos_conv.0.bias"] = r(ctx.embed_dim)
    s["encoder.pos_conv.0.weight_g"] = 1 + r(1, 1, ctx.pos_conv_kernel)
    s["encoder.pos_conv.0.weight_v"] = r(ctx.embed_dim, ctx.embed_dim // ctx.pos_conv_groups, ctx.pos_conv_kernel)
    for i in range(ctx.num_layers):
        p = f"encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s[p + f"self_attn.{proj}.weight"], s[p + f"self_attn.{proj}.bias"] = r(ctx.embed_dim, ctx.embed_dim), r(ctx.embed_dim)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            s[p + f"{norm}.weight"], s[p + f"{norm}.bias"] = 1 + r(ctx.embed_dim), r(ctx.embed_dim)
        s[p + "fc1.weight"], s[p + "fc1.bias"] = r(ctx.ffn_dim, ctx.embed_dim), r(ctx.ffn_dim)
        s[p + "fc2.weight"], s[p + "fc2.bias"] = r(ctx.embed_dim, ctx.ffn_dim), r(ctx.embed_dim)
    s["encoder.layer_norm.weight"], s["encoder.layer_norm.bias"] = 1 + r(ctx.embed_dim), r(ctx.embed_dim)
    s["quantizer.vars"] = r(1, q.groups * q.entries, q.dim // q.groups)
    s["quantizer.weight_proj.weight"], s["quantizer.weight_proj.bias"] = r(q.groups * q.entries, cin), r(q.groups * q.entries)
    s["project_q.weight"], s["project_q.bias"] = r(cfg.final_dim, q.dim), r(cfg.final_dim)
    s["final_proj.weight"], s["final_proj.bias"] = r(cfg.final_dim, ctx.embed_dim), r(cfg.final_dim)
    return {prefix + k: v for k, v in s.items()}


def fairseq_model_args(cfg: ModelConfig) -> dict:
    fe, ctx, q = cfg.feature_encoder, cfg.context, cfg.quantizer
    return {"_name": "wav2vec2", "conv_feature_layers": " + ".join(f"[{tuple(layer)}]" for layer in fe.conv_layers),
            "extractor_mode": "default", "encoder_embed_dim": ctx.embed_dim, "encoder_layers": ctx.num_layers,
            "encoder_attention_heads": ctx.num_heads, "encoder_ffn_embed_dim": ctx.ffn_dim, "conv_pos": ctx.pos_conv_kernel,
            "conv_pos_groups": ctx.pos_conv_groups, "latent_groups": q.groups, "latent_vars": q.entries,
            "latent_dim": q.dim, "final_dim": cfg.final_dim, "latent_temp": "(2.0, 0.5, 0.999995)",
            "num_negatives": 7, "feature_grad_mult": 0.1, "dropout_input": 0.1, "encoder_layerdrop": 0.05}


def test_fairseq_pretraining_checkpoint_agrees_with_torchaudios_fairseq_mapping(tmp_path: Path) -> None:
    from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict

    state = fairseq_state(SMALL)
    torch.save({"cfg": {"model": fairseq_model_args(SMALL), "task": {"normalize": False},
                        "criterion": {"loss_weights": [0.1, 10]}}, "model": state, "args": None}, tmp_path / "fs.pt")
    ckpt = read_checkpoint(tmp_path / "fs.pt")
    pretrainer, cfg = load_pretrainer(ckpt, "fs")
    assert cfg.context == SMALL.context and cfg.feature_encoder.conv_layers == SMALL.feature_encoder.conv_layers
    assert ckpt["config"]["loss"]["num_distractors"] == 7 and ckpt["config"]["loss"]["penalty_weight"] == 10
    reference = _convert_state_dict(state)  # torchaudio's own fairseq -> torchaudio names (towers)
    towers = pretrainer.model.state_dict()
    for key, value in reference.items():
        ours = key.replace("weight_g", "parametrizations.weight.original0").replace("weight_v", "parametrizations.weight.original1")
        assert torch.equal(towers[ours], value), key
    assert torch.equal(pretrainer.model.mask_embedding, state["mask_emb"])
    assert torch.equal(pretrainer.quantizer.codebook, state["quantizer.vars"])
    assert torch.equal(pretrainer.final_proj.weight, state["final_proj.weight"])


def test_fairseq_namespace_checkpoint_and_ctc_dictionary(tmp_path: Path) -> None:
    state = fairseq_state(SMALL, prefix="w2v_encoder.w2v_model.")
    letters = ["|", "E", "T", "A"]
    state["w2v_encoder.proj.weight"] = torch.randn(4 + len(letters), SMALL.context.embed_dim)
    state["w2v_encoder.proj.bias"] = torch.randn(4 + len(letters))
    inner = argparse.Namespace(**fairseq_model_args(SMALL), arch="wav2vec2", normalize=True)
    args = argparse.Namespace(arch="wav2vec_ctc", w2v_args=inner, normalize=True)
    torch.save({"args": args, "model": state}, tmp_path / "ctc.pt")
    with pytest.raises(CheckpointError, match="dict.ltr.txt is missing"):
        read_checkpoint(tmp_path / "ctc.pt")
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{s} {100 - i}\n" for i, s in enumerate(letters)))
    loaded = load_model(tmp_path / "ctc.pt")
    assert loaded.normalize is True
    assert loaded.vocab.symbols == ("<blank>", "<unk>", "|", "<pad>", "</s>", "E", "T", "A")
    peer_rows = [0, 3, 4, 1, 2, 5, 6, 7]  # fairseq: <s>=blank 0, <pad> 1, </s> 2, <unk> 3, then the file
    assert torch.equal(loaded.model.aux.weight, state["w2v_encoder.proj.weight"][peer_rows])
    # the same file in torch's legacy (non-zip) format, as fairseq wrote them before torch 1.6
    torch.save({"args": args, "model": state}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_model(tmp_path / "legacy.pt").model.aux.weight, loaded.model.aux.weight)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": {}, "extra": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused: the pickle names \['builtins.getattr', 'pathlib.Path'"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": {}, "extra": Evil()}, tmp_path / "old.pt",
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old.pt: refused: the pickle names"):
        read_checkpoint(tmp_path / "old.pt")
    assert not marker.exists()
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"model": {"x": 1}, "cfg": None}))
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "plain.pkl")


def test_other_architectures_are_named_and_refused(tmp_path: Path) -> None:
    hubert = transformers.HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                       conv_dim=(16,), conv_kernel=(10,), conv_stride=(5,), num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=2)
    transformers.HubertModel(hubert).save_pretrained(tmp_path / "hubert")
    with pytest.raises(CheckpointError, match="a HuBERT model; cssl reads wav2vec 2.0 models only .*Wav2Vec2ForCTC"):
        read_checkpoint(tmp_path / "hubert")
    torch.save({"cfg": {"model": {"_name": "data2vec_audio"}}, "model": {"x": torch.ones(1)}}, tmp_path / "d2v.pt")
    with pytest.raises(CheckpointError, match="fairseq architecture 'data2vec_audio'.*not supported"):
        read_checkpoint(tmp_path / "d2v.pt")


def test_a_wrong_architecture_names_the_key_both_shapes_and_the_setting(tmp_path: Path) -> None:
    torch.save(build_model(SMALL).state_dict(), tmp_path / "plain.pt")
    wider = ModelConfig(feature_encoder=SMALL.feature_encoder, context=ContextConfig(
        embed_dim=48, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16, pos_conv_groups=2))
    with pytest.raises(CheckpointError, match=r"'mask_embedding' has shape \(32,\) in the file "
                                              r"and \(48,\) in the model; the file fits model.context.embed_dim = 32"):
        load_model(tmp_path / "plain.pt", wider)
    deeper = ModelConfig(feature_encoder=SMALL.feature_encoder, context=ContextConfig(
        embed_dim=32, num_layers=3, num_heads=2, ffn_dim=64, pos_conv_kernel=16, pos_conv_groups=2))
    with pytest.raises(CheckpointError, match="set model.context.num_layers = 2"):
        load_model(tmp_path / "plain.pt", deeper)


def test_continued_pretraining_and_fine_tuning_start_from_an_hf_model(tmp_path: Path) -> None:
    from finetune.config import FinetuneConfig
    from finetune.train import initial_model
    from pretrain.config import PretrainConfig
    from pretrain.train import initial_pretrainer

    torch.manual_seed(0)
    hf = randomize(transformers.Wav2Vec2ForPreTraining(hf_config(SMALL)))
    hf.save_pretrained(tmp_path / "hf")
    cfg = PretrainConfig(init=str(tmp_path / "hf"))
    pretrainer, source = initial_pretrainer(cfg)
    assert "quantizer included" in source and cfg.model.context == SMALL.context
    assert cfg.model.mask.prob == PretrainConfig().model.mask.prob  # masking stays the run's
    assert torch.equal(pretrainer.quantizer.codebook, hf.quantizer.codevectors.detach())
    assert torch.equal(pretrainer.project_q.weight, hf.project_q.weight.detach())
    model, _, _ = initial_model(FinetuneConfig(init=str(tmp_path / "hf")), ctc_vocab())
    assert torch.equal(model.mask_embedding, hf.wav2vec2.masked_spec_embed.detach())  # used by fine-tuning's masking


def test_a_users_hf_model_through_both_stages_and_transcription(tmp_path: Path, capsys) -> None:
    """The README's "bring your checkpoint" commands, with a small model standing in for facebook/wav2vec2-base."""
    from cssl.cli import main as cssl
    from cssl.synth.corpus import synthesize_corpus
    from cssl.utils.config import load_config
    from finetune.config import FinetuneConfig
    from finetune.train import main as finetune
    from pretrain.config import PretrainConfig
    from pretrain.train import main as pretrain

    corpus = tmp_path / "corpus"
    synthesize_corpus(corpus, num_utterances=60, seed=3, vocab_size=60, progress=False)
    torch.manual_seed(0)
    transformers.Wav2Vec2ForPreTraining(hf_config(SMALL)).save_pretrained(tmp_path / "hf")
    run = ["mixed_precision=no", "data.num_workers=0", "log_every=1", "valid_every=100", "save_every=100"]
    continued = pretrain(load_config(PretrainConfig, None, [
        f"init={tmp_path / 'hf'}", f"data.manifest={corpus / 'unlabeled.tsv'}", "optim.max_steps=2",
        "loss.num_distractors=5", "data.crop_samples=16000", f"out_dir={tmp_path / 'pt'}", *run]))
    asr = finetune(load_config(FinetuneConfig, None, [
        f"init={continued}", f"data.manifest={corpus / 'train.tsv'}", f"data.valid_manifest={corpus / 'dev.tsv'}",
        "optim.max_steps=2", "calibrate=false", f"out_dir={tmp_path / 'ft'}", *run]))
    assert cssl(["convert", str(asr), str(tmp_path / "hf-asr"), "--to", "hf"]) == 0
    assert "fine-tuned (CTC head" in capsys.readouterr().out
    clip = corpus / "test" / sorted(p.name for p in (corpus / "test").iterdir())[0]
    for model in (asr, tmp_path / "hf-asr"):  # ours, and the transformers folder written from it
        assert cssl(["transcribe", str(model), str(clip)]) == 0
    first, second = capsys.readouterr().out.strip().splitlines()[-2:]
    assert first.split("\t")[-1] == second.split("\t")[-1]  # the same transcript from either file
    from cssl.score.temperature import calibrate

    figures = calibrate(tmp_path / "hf-asr", corpus / "dev.tsv")  # a transformers folder, calibrated as it is
    assert figures["stored_in"] == str(tmp_path / "hf-asr" / "config.json")
    assert load_model(tmp_path / "hf-asr").temperature == pytest.approx(figures["temperature"])
    assert transformers.Wav2Vec2ForCTC.from_pretrained(tmp_path / "hf-asr") is not None  # still a transformers folder
