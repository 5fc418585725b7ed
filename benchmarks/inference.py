"""Inference backends: cssl eager (fp32, bf16), cssl ONNX (fp32, int8) against HF transformers'
Wav2Vec2ForCTC and torchaudio's Wav2Vec2Model, on the same weights.

    pip install -e '.[bench]'      # transformers, only for the benchmarks
    python benchmarks/inference.py [--sizes tiny,base] [--threads 1,2] [--seconds 10] [--repeats 5]
                                   [--wer CKPT MANIFEST] [--limit 100]

Every implementation runs the same weights: an HF ``Wav2Vec2ForCTC`` with a 32-symbol head, converted
by torchaudio's ``import_huggingface_model``, whose state dict our towers load; ``cssl export`` writes
them as ONNX (fp32, and int8 weights for the matrix products). Timed, under ``torch.inference_mode``,
medians over ``--repeats`` after a warm-up: frame log-probabilities and greedy labels of

- batch 1: one ``--seconds`` clip (cssl through ``Recognizer.log_probs``, which the ONNX file also runs);
- batch 8: eight clips of 4 to 16 s zero-padded into one batch with their lengths (HF with its
  attention mask).

Each backend runs in its own process, so its peak memory (resident set above the process's size once
its libraries are imported) is its own. Real-time factor = compute seconds / audio seconds; "vs HF" is HF
fp32's time over the row's, on the same batch and thread count. bf16 rows appear where the CPU has
native bf16 (AVX512_BF16 or AMX).

``--wer CKPT MANIFEST`` adds each cssl backend's WER and CER on a labeled manifest (greedy decoding),
with the checkpoint exported for the ONNX rows: the demo's test split, for instance.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpu_info import cpu_line

from cssl.model import ModelConfig, build_model  # noqa: E402
from cssl.text.vocab import SPECIALS, Vocabulary  # noqa: E402
from cssl.train.runtime import cpu_has_bf16  # noqa: E402
from cssl.utils.config import load_config, preset  # noqa: E402

MODELS = {"tiny": preset("model/tiny.yaml"), "base": preset("model/base.yaml")}
VOCAB = Vocabulary(SPECIALS + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ'-."))
BATCH_SECONDS = (4, 5.5, 7, 8.5, 10, 11.5, 13, 16)
BACKENDS = ("HF transformers fp32", "torchaudio fp32", "cssl eager fp32", "cssl eager bf16", "cssl ONNX fp32",
            "cssl ONNX int8")


def hf_ctc(cfg: ModelConfig, vocab_size: int):
    """transformers' ``Wav2Vec2ForCTC`` of our architecture, dropouts and LayerDrop included, in eval mode."""
    from transformers import Wav2Vec2ForCTC

    from cssl.convert.hf import transformers_config

    model = Wav2Vec2ForCTC(transformers_config(cfg, "Wav2Vec2ForCTC", vocab_size))
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


def rss_mb() -> float:
    """Peak resident MiB of this process so far (read, not sampled: no thread runs beside the timing)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inputs(seconds: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch-1 clip, and a padded batch of eight clips with its lengths (fixed seed)."""
    generator = torch.Generator().manual_seed(0)
    one = torch.randn(int(seconds * 16000), generator=generator) * 0.1
    lengths = torch.tensor([int(s * 16000) for s in BATCH_SECONDS])
    batch = torch.randn(len(lengths), int(lengths.max()), generator=generator) * 0.1
    batch *= (torch.arange(batch.shape[1])[None, :] < lengths[:, None]).float()  # zero padding
    return one, batch, lengths


def measure(backend: str, size: str, threads: int, files: dict[str, str], seconds: float, repeats: int) -> dict:
    """One backend in this (child) process: batch-1 and batch-8 medians, greedy labels, peak memory."""
    torch.set_num_threads(threads)
    from cssl.decode.recognizer import Recognizer
    from cssl.deploy.onnx_model import OnnxCTCModel

    start_mb = rss_mb()
    one, batch, lengths = inputs(seconds)
    cfg = load_config(ModelConfig, MODELS[size])
    state = torch.load(files["state"], weights_only=True)
    if backend.startswith("HF"):
        model = hf_ctc(cfg, len(VOCAB))
        model.load_state_dict(state["hf"])
        mask = (torch.arange(batch.shape[1])[None, :] < lengths[:, None]).long()

        def run1():
            return model(one[None]).logits[0].log_softmax(-1).argmax(-1)

        def run8():
            return model(batch, attention_mask=mask).logits.log_softmax(-1).argmax(-1)
    elif backend.startswith("torchaudio"):
        from torchaudio.models.wav2vec2.utils import import_huggingface_model

        hf = hf_ctc(cfg, len(VOCAB))
        hf.load_state_dict(state["hf"])
        model = import_huggingface_model(hf).eval()
        del hf

        def run1():
            return model(one[None])[0][0].log_softmax(-1).argmax(-1)

        def run8():
            return model(batch, lengths)[0].log_softmax(-1).argmax(-1)
    else:
        if "ONNX" in backend:
            model = OnnxCTCModel(files["int8" if "int8" in backend else "fp32"], threads=threads)
            rec = Recognizer(model, VOCAB, chunk_seconds=max(30.0, seconds + 1))
        else:
            model = build_model(cfg, vocab_size=len(VOCAB))
            model.load_state_dict(state["ours"], strict=False)
            rec = Recognizer(model.eval(), VOCAB, chunk_seconds=max(30.0, seconds + 1),
                             precision="bf16" if "bf16" in backend else "no")
            model = rec.model

        def run1():
            return rec.log_probs(one).argmax(-1)

        def run8():
            with rec._autocast():
                logits, _ = model(batch, lengths)
            return logits.float().log_softmax(-1).argmax(-1)

    with torch.inference_mode():
        t1, labels1 = median_time(run1, repeats)
        t8, labels8 = median_time(run8, max(1, repeats // 2))
    return {"backend": backend, "t1": t1, "t8": t8, "labels1": labels1, "labels8": labels8,
            "peak_mb": rss_mb() - start_mb}


def in_child(*args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, args)


def prepare(size: str, folder: Path) -> dict[str, str]:
    """The shared random weights (HF and our names) and their ONNX exports."""
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    from cssl.deploy.export import export_model

    torch.manual_seed(0)
    cfg = load_config(ModelConfig, MODELS[size])
    hf = hf_ctc(cfg, len(VOCAB))
    ours = build_model(cfg, vocab_size=len(VOCAB))
    missing, unexpected = ours.load_state_dict(import_huggingface_model(hf).state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"mask_embedding"}, (missing, unexpected)
    files = {"state": str(folder / f"{size}.pt"), "fp32": str(folder / f"{size}.onnx"),
             "int8": str(folder / f"{size}-int8.onnx")}
    torch.save({"hf": hf.state_dict(), "ours": ours.state_dict()}, files["state"])
    for key, int8 in (("fp32", False), ("int8", True)):
        report = export_model(ours, VOCAB, files[key], int8=int8, source=f"random {size}")
        print(f"exported {size} {key}: {report.megabytes:.1f} MB, largest logit difference "
              f"{report.max_logit_error:.2e}", flush=True)
    return files


def wer_rows(ckpt: Path, manifest: Path, limit: int, threads: int, folder: Path) -> list[str]:
    """Greedy WER/CER of each cssl backend on a labeled manifest."""
    import jiwer

    from cssl.data.manifest import read_manifest
    from cssl.decode.recognizer import Recognizer
    from cssl.deploy.export import export_onnx

    torch.set_num_threads(threads)
    data = read_manifest(manifest)
    entries = list(data)[:limit]
    refs = [(e.text or "").upper() for e in entries]
    models = {"cssl eager fp32": (ckpt, "no"), "cssl ONNX fp32": (folder / "wer.onnx", "no"),
              "cssl ONNX int8": (folder / "wer-int8.onnx", "no")}
    if cpu_has_bf16():
        models["cssl eager bf16"] = (ckpt, "bf16")
    export_onnx(ckpt, folder / "wer.onnx")
    export_onnx(ckpt, folder / "wer-int8.onnx", int8=True)
    lines = [f"\n## Greedy WER on {manifest} ({len(entries)} utterances), {ckpt}\n",
             "| backend | WER | CER | transcripts equal to eager fp32 | seconds |", "|---|---:|---:|---:|---:|"]
    eager = None
    for name, (path, precision) in models.items():
        rec = Recognizer.from_checkpoint(path, precision=precision)
        start = time.perf_counter()
        hyps = [rec.transcribe(data.audio_path(e)).text for e in entries]
        took = time.perf_counter() - start
        eager = eager or hyps
        same = sum(a == b for a, b in zip(hyps, eager))
        lines.append(f"| {name} | {jiwer.process_words(refs, hyps).wer:.4f} | {jiwer.cer(refs, hyps):.4f} "
                     f"| {same}/{len(hyps)} | {took:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,base")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma separated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--wer", nargs=2, type=Path, metavar=("CKPT", "MANIFEST"), default=None)
    parser.add_argument("--limit", type=int, default=100, help="utterances for --wer")
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    backends = [b for b in BACKENDS if "bf16" not in b or cpu_has_bf16()]
    lines = [f"# Inference backends, batch 1 ({args.seconds:g} s) and batch 8 ({min(BATCH_SECONDS):g}-"
             f"{max(BATCH_SECONDS):g} s, {sum(BATCH_SECONDS):g} s of audio)",
             f"\n{cpu_line()}, "
             f"bf16 {'native' if cpu_has_bf16() else 'absent'}, "
             f"torch {torch.__version__}\n",
             "| size | threads | backend | batch 1 s | RTF | vs HF | batch 8 s | RTF | vs HF | peak MB | "
             "frames agreeing with HF |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            files = prepare(size, Path(tmp))
            for n in threads:
                rows = [in_child(b, size, n, files, args.seconds, args.repeats) for b in backends]
                hf = rows[0]
                for r in rows:
                    agree = float((r["labels1"] == hf["labels1"]).float().mean())
                    lines.append(
                        f"| {size} | {n} | {r['backend']} | {r['t1']:.3f} | {r['t1'] / args.seconds:.4f} "
                        f"| {hf['t1'] / r['t1']:.2f}x | {r['t8']:.3f} | {r['t8'] / sum(BATCH_SECONDS):.4f} "
                        f"| {hf['t8'] / r['t8']:.2f}x | {r['peak_mb']:.0f} | {agree:.1%} |")
                    print(lines[-1], flush=True)
        if args.wer:
            lines += wer_rows(*args.wer, args.limit, max(threads), Path(tmp))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
