"""The service under load: concurrent clients against ``cssl serve`` over loopback for a fixed time.

    python benchmarks/serve_load.py CKPT AUDIO_DIR [--clients 8] [--seconds 60] [--streams 2] [--threads 2]

Starts the service in this process (uvicorn, loopback port), then ``--clients`` HTTP clients POST the files
of AUDIO_DIR in turn and ``--streams`` WebSocket clients stream them (16-bit PCM, 160 ms chunks, as fast as
the socket takes them) until ``--seconds`` have passed. Prints requests served, errors (any non-200 answer
or socket error), requests lost (sent and never answered), throughput, and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_info import cpu_line  # noqa: E402

from cssl.data.audio import load_audio  # noqa: E402
from cssl.data.policy import AUDIO_EXTENSIONS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("audio", type=Path, help="a folder of audio files")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import httpx
    import torch
    import uvicorn
    import websockets

    from cssl.decode.recognizer import Recognizer
    from cssl.serve.app import build_app

    torch.set_num_threads(args.threads)
    files = sorted(p for p in args.audio.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)[: args.files]
    payloads = [p.read_bytes() for p in files]
    pcm = [(load_audio(p).clamp(-1, 1).numpy() * 32767).astype(np.int16) for p in files]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(Recognizer.from_checkpoint(args.checkpoint), args.checkpoint.name)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           ws="websockets-sansio"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    deadline = time.monotonic() + args.seconds
    stats = {"http": [], "stream": [], "errors": [], "sent": 0}
    lock = threading.Lock()

    def sent() -> float:
        with lock:
            stats["sent"] += 1
        return time.perf_counter()

    def answer(kind: str, start: float, error: Exception | None = None) -> None:
        with lock:
            if error is None:
                stats[kind].append(time.perf_counter() - start)
            else:
                stats["errors"].append(f"{kind}: {error!r}")

    def http_client(k: int) -> None:
        with httpx.Client(timeout=120) as client:
            i = k
            while time.monotonic() < deadline:
                start = sent()
                try:
                    reply = client.post(f"http://127.0.0.1:{port}/transcribe", content=payloads[i % len(payloads)])
                    assert reply.status_code == 200 and "text" in reply.json(), reply.text
                    answer("http", start)
                except Exception as err:  # counted, the run goes on
                    answer("http", start, err)
                i += args.clients

    async def stream_client(k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            start = sent()
            try:
                async with websockets.connect(f"ws://127.0.0.1:{port}/stream") as ws:
                    await ws.send(json.dumps({"sample_rate": 16000, "encoding": "pcm_s16le"}))
                    assert json.loads(await ws.recv())["type"] == "ready"
                    wave = pcm[i % len(pcm)]
                    for s in range(0, len(wave), 2560):
                        await ws.send(wave[s : s + 2560].tobytes())
                    await ws.send(json.dumps({"type": "end"}))
                    final = None
                    async for message in ws:
                        final = json.loads(message)
                    assert final is not None and final["type"] == "final", final
                answer("stream", start)
            except Exception as err:  # counted, the run goes on
                answer("stream", start, err)
            i += args.streams

    async def streams() -> None:
        await asyncio.gather(*(stream_client(k) for k in range(args.streams)))

    workers = [threading.Thread(target=http_client, args=(k,)) for k in range(args.clients)]
    for w in workers:
        w.start()
    if args.streams:
        asyncio.run(streams())
    for w in workers:
        w.join()
    health = httpx.get(f"http://127.0.0.1:{port}/health").json()
    server.should_exit = True
    answered = len(stats["http"]) + len(stats["stream"]) + len(stats["errors"])

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[int(q * (len(values) - 1))] * 1000 if values else float("nan")

    print(f"# cssl serve under load: {args.clients} HTTP clients and {args.streams} WebSocket streams for "
          f"{args.seconds:g} s, {args.checkpoint}\n")
    print(f"{cpu_line()}, {args.threads} threads, {len(files)} files from {args.audio}\n")
    print("| client | served | median ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|")
    for kind in ("http", "stream"):
        v = stats[kind]
        print(f"| {kind} | {len(v)} | {statistics.median(v) * 1000 if v else float('nan'):.0f} | {pct(v, 0.95):.0f} "
              f"| {pct(v, 1.0):.0f} |")
    print(f"\nerrors: {len(stats['errors'])}; lost (sent, never answered): {stats['sent'] - answered}; "
          f"throughput {(len(stats['http']) + len(stats['stream'])) / args.seconds:.1f} requests/s; "
          f"service counters: {json.dumps({k: health[k] for k in ('transcribed', 'streams', 'rejected', 'failed')})}")
    for err in stats["errors"][:5]:
        print("  error:", err)
    return 1 if stats["errors"] or stats["sent"] != answered else 0


if __name__ == "__main__":
    sys.exit(main())
