"""Inference: cssl's Recognizer vs HF transformers' Wav2Vec2ForCTC and torchaudio's Wav2Vec2Model.

    pip install -e '.[bench]'      # transformers, only for the benchmarks
    python benchmarks/inference.py --size base --seconds 10 --threads 2

The three run the same weights (an HF ``Wav2Vec2ForCTC`` with a 32-symbol head,
converted by torchaudio's ``import_huggingface_model``, whose state dict our towers load)
on the same audio, batch 1. Timed: the forward pass to frame log-probabilities plus
greedy decoding, under ``torch.inference_mode``; medians over ``--repeats`` after a
warm-up. Ours runs in fp32 and with bf16 autocast (``Recognizer(precision="bf16")``);
each row gives its real-time factor, its speed-up over HF and torchaudio (fp32), and
how many frames' greedy labels agree with HF's.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from cssl.decode.recognizer import Recognizer
from cssl.model import ModelConfig, build_model
from cssl.text.vocab import SPECIALS, Vocabulary
from cssl.utils.config import load_config, preset

MODELS = {"tiny": preset("model/tiny.yaml"), "base": preset("model/base.yaml")}


def hf_ctc(cfg: ModelConfig, vocab_size: int):
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    fe, ctx = cfg.feature_encoder, cfg.context
    config = Wav2Vec2Config(
        vocab_size=vocab_size, conv_dim=[c for c, _, _ in fe.conv_layers],
        conv_kernel=[k for _, k, _ in fe.conv_layers], conv_stride=[s for _, _, s in fe.conv_layers],
        conv_bias=fe.bias, feat_extract_norm=fe.norm.split("_")[0], hidden_size=ctx.embed_dim,
        num_hidden_layers=ctx.num_layers, num_attention_heads=ctx.num_heads, intermediate_size=ctx.ffn_dim,
        do_stable_layer_norm=ctx.layer_norm_first, num_conv_pos_embeddings=ctx.pos_conv_kernel,
        num_conv_pos_embedding_groups=ctx.pos_conv_groups,
    )
    model = Wav2Vec2ForCTC(config)
    model.config._attn_implementation = "sdpa"
    return model.eval()


def median_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(MODELS), default="base")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    cfg = load_config(ModelConfig, MODELS[args.size])
    vocab = Vocabulary(SPECIALS + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ'-."))
    hf = hf_ctc(cfg, len(vocab))
    ta = import_huggingface_model(hf).eval()
    ours = build_model(cfg, vocab_size=len(vocab))
    missing, unexpected = ours.load_state_dict(ta.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"mask_embedding"}, (missing, unexpected)
    wave = torch.randn(int(args.seconds * 16000)) * 0.1
    frames_s = args.seconds

    def run_hf():
        with torch.inference_mode():
            return hf(wave[None]).logits[0].log_softmax(-1).argmax(-1)

    def run_ta():
        with torch.inference_mode():
            return ta(wave[None])[0][0].log_softmax(-1).argmax(-1)

    rows = [("HF transformers Wav2Vec2ForCTC", "fp32", *median_time(run_hf, args.repeats)),
            ("torchaudio Wav2Vec2Model", "fp32", *median_time(run_ta, args.repeats))]
    for precision in ("no", "bf16"):
        rec = Recognizer(ours, vocab, precision=precision, chunk_seconds=max(30.0, args.seconds + 1))

        def run_ours(rec=rec):
            with torch.inference_mode():
                return rec.log_probs(wave).argmax(-1)

        rows.append(("cssl Recognizer", "fp32" if precision == "no" else "bf16 autocast",
                     *median_time(run_ours, args.repeats)))
    ref = rows[0][3]
    t_hf, t_ta = rows[0][2], rows[1][2]
    print(f"# Inference, {args.size.upper()} size, batch 1, {args.seconds:g} s of audio, {args.threads} threads")
    print(f"\n{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| implementation | precision | median s | RTF | vs HF | vs torchaudio | frames agreeing with HF |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, precision, seconds, labels in rows:
        agree = float((labels == ref).float().mean()) if labels.shape == ref.shape else float("nan")
        print(f"| {name} | {precision} | {seconds:.3f} | {seconds / frames_s:.4f} | {t_hf / seconds:.2f}x "
              f"| {t_ta / seconds:.2f}x | {agree:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
