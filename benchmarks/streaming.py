"""Streaming against whole-file decoding: WER, CER and latency of ``Recognizer.stream`` on a labeled manifest.

    python benchmarks/streaming.py CKPT MANIFEST [--limit 100] [--chunk-ms 160] [--left 2,4,8] [--threads 2]

Each utterance is transcribed whole (``Recognizer.transcribe``) and streamed in ``--chunk-ms`` chunks as
fast as the stream takes them (greedy decoding both ways); for each left context the table gives WER and CER
of both, the relative change, how many transcripts are identical, and the latency from the last chunk to
the final result (median and 95th percentile: one model run over the last window, and the decoding), and the
compute per second of audio of the whole stream against whole-file decoding.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_info import cpu_line  # noqa: E402

from cssl.data.audio import load_audio  # noqa: E402
from cssl.data.manifest import read_manifest  # noqa: E402
from cssl.decode.recognizer import Recognizer  # noqa: E402
from cssl.decode.streaming import stream_audio  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="fine-tuning checkpoint or exported ONNX file")
    parser.add_argument("manifest", type=Path, help="labeled manifest")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--chunk-ms", type=float, default=160.0)
    parser.add_argument("--left", default="2,4,8", help="left contexts in seconds, comma separated")
    parser.add_argument("--right", type=float, default=0.8)
    parser.add_argument("--update", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import jiwer

    torch.set_num_threads(args.threads)
    rec = Recognizer.from_checkpoint(args.checkpoint)
    data = read_manifest(args.manifest)
    entries = list(data)[: args.limit]
    waves = [load_audio(data.audio_path(e)) for e in entries]
    refs = [(e.text or "").upper() for e in entries]
    audio_s = sum(w.numel() for w in waves) / 16000
    start = time.perf_counter()
    whole = [rec.transcribe(w).text for w in waves]
    whole_s = time.perf_counter() - start
    w_wer, w_cer = jiwer.process_words(refs, whole).wer, jiwer.cer(refs, whole)
    lines = [f"# Streaming vs whole-file decoding: {len(entries)} utterances ({audio_s / 60:.1f} min) of "
             f"{args.manifest}, {args.checkpoint}",
             f"\n{cpu_line()}, {args.threads} threads, chunks of {args.chunk_ms:g} ms, "
             f"right context {args.right:g} s, an update every {args.update:g} s\n",
             "| decoding | WER | CER | WER vs whole | CER vs whole | identical | latency median ms | p95 ms "
             "| compute s per audio s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| whole file | {w_wer:.4f} | {w_cer:.4f} | | | | | | {whole_s / audio_s:.4f} |"]
    for left in (float(x) for x in args.left.split(",")):
        hyps, latencies = [], []
        start = time.perf_counter()
        for wave in waves:
            done = stream_audio(rec.stream(left, args.right, args.update), wave, args.chunk_ms / 1000)
            hyps.append(done.transcript.text)
            latencies.append(done.latency * 1000)
        took = time.perf_counter() - start
        wer, cer = jiwer.process_words(refs, hyps).wer, jiwer.cer(refs, hyps)
        p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))]
        lines.append(f"| stream, left {left:g} s | {wer:.4f} | {cer:.4f} | {wer / w_wer - 1:+.2%} | {cer / w_cer - 1:+.2%} "
                     f"| {sum(a == b for a, b in zip(hyps, whole))}/{len(hyps)} | {statistics.median(latencies):.0f} "
                     f"| {p95:.0f} | {took / audio_s:.4f} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
