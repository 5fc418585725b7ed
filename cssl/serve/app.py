"""The service: one recognizer, shared by every request.

- ``GET /`` — a page: drop a file (or record from the microphone) and read the transcript, each word
  shaded by its confidence.
- ``GET /health`` — the model, backend and counters, as JSON.
- ``POST /transcribe`` — a file as the body (any format the suite decodes) or as the ``file`` field of a
  multipart form; returns the transcript with word times and confidences as JSON.
- ``WS /stream`` — live audio: the client sends a JSON header ``{"sample_rate": 16000, "encoding":
  "pcm_s16le"}`` (or ``pcm_f32le``), then binary PCM chunks, then ``{"type": "end"}``; the service answers
  ``{"type": "ready"}``, ``{"type": "partial", "text", "stable", "seconds"}`` as the text changes, and
  ``{"type": "final", "text", "words", "seconds"}``.

Bad input gets a 4xx answer with ``{"error": message}`` (WebSocket: an ``error`` message, then the socket
closes with code 1003 or 1008), never a crash: not audio (415), empty (400), too large (413) or too long
(413), a body without a length (411), a stream header with another sample rate or encoding (1003), a
stream longer than allowed (1008). The model runs one request at a time (a lock: the model and decoders
are shared), in a worker thread, so the event loop keeps accepting clients while it works.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from cssl import SAMPLE_RATE
from cssl.data.audio import AudioError, load_audio_bytes


@dataclass
class Limits:
    """What the service accepts."""

    max_upload_mb: float = 25.0
    """Largest upload body, in megabytes."""
    max_seconds: float = 300.0
    """Longest uploaded audio, in seconds."""
    max_stream_seconds: float = 3600.0
    """Longest WebSocket stream, in seconds of audio."""


ENCODINGS = {"pcm_s16le": (np.int16, 32768.0), "pcm_f32le": (np.float32, 1.0)}
"""Stream encodings: sample type and the scale that maps it to [-1, 1]."""


def build_app(recognizer, model_name: str, limits: Limits | None = None, stream_options: dict | None = None):
    """The FastAPI application serving ``recognizer``."""
    limits = limits or Limits()
    stream_options = stream_options or {}
    app = FastAPI(title="cssl", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    started = time.monotonic()
    counts = {"transcribed": 0, "streams": 0, "rejected": 0, "failed": 0}
    page = resources.files("cssl.serve").joinpath("page.html").read_text(encoding="utf-8")

    def locked(fn, *args):
        with lock:
            return fn(*args)

    def refuse(status: int, message: str) -> JSONResponse:
        counts["rejected"] += 1
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "backend": _backend(recognizer),
                "symbols": len(recognizer.vocab), "sample_rate": SAMPLE_RATE, "limits": asdict(limits),
                "uptime_seconds": round(time.monotonic() - started, 1), **counts}

    @app.post("/transcribe")
    async def transcribe(request: Request):
        limit = int(limits.max_upload_mb * 2**20)
        length = request.headers.get("content-length")
        if length is None:
            return refuse(411, "send the file with a Content-Length (a plain body or a multipart form)")
        if int(length) > limit:
            return refuse(413, f"the upload is {int(length) / 2**20:.1f} MB; the limit is {limits.max_upload_mb:g} MB")
        name = "upload"
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return refuse(400, "the multipart form has no file field named 'file'")
            name, payload = upload.filename or name, await upload.read()
        else:
            payload = await request.body()
        try:
            wave = await run_in_threadpool(load_audio_bytes, payload, name, SAMPLE_RATE, recognizer.normalize)
        except AudioError as err:
            status = 400 if err.reason == "zero length" else 415
            return refuse(status, f"not audio the service can read: {err}")
        seconds = wave.numel() / SAMPLE_RATE
        if seconds > limits.max_seconds:
            return refuse(413, f"the audio lasts {seconds:.1f} s; the limit is {limits.max_seconds:g} s")
        try:
            result = await run_in_threadpool(locked, recognizer.transcribe, wave)
        except Exception as err:  # the service answers; it does not go down with one request
            counts["failed"] += 1
            return JSONResponse({"error": f"recognition failed: {err}"}, status_code=500)
        counts["transcribed"] += 1
        return _transcript_json(result, name)

    @app.websocket("/stream")
    async def stream(socket: WebSocket) -> None:
        await socket.accept()
        try:
            header = _stream_header(await socket.receive_text())
        except (ValueError, WebSocketDisconnect) as err:
            counts["rejected"] += 1
            await _close_with_error(socket, 1003, str(err))
            return
        counts["streams"] += 1
        dtype, scale = ENCODINGS[header["encoding"]]
        recognition = recognizer.stream(**stream_options)
        await socket.send_json({"type": "ready", "sample_rate": SAMPLE_RATE})
        last_text = None
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    data = message["bytes"]
                    if len(data) % np.dtype(dtype).itemsize:
                        raise ValueError(f"a chunk of {len(data)} bytes is not whole {header['encoding']} samples")
                    chunk = np.frombuffer(data, dtype=dtype).astype(np.float32) / scale
                    if recognition.received / SAMPLE_RATE + chunk.size / SAMPLE_RATE > limits.max_stream_seconds:
                        await _close_with_error(socket, 1008, f"the stream passed {limits.max_stream_seconds:g} s")
                        return
                    if recognition.runs_model(chunk.size):
                        partial = await run_in_threadpool(locked, recognition.accept, chunk)
                    else:  # only buffered: no model, no lock, no wait behind other clients
                        partial = recognition.accept(chunk)
                    if partial.updated and partial.text != last_text:
                        last_text = partial.text
                        await socket.send_json({"type": "partial", "text": partial.text, "stable": partial.stable,
                                                "seconds": round(partial.seconds, 3)})
                elif _is_end(message.get("text")):
                    final = await run_in_threadpool(locked, recognition.finish)
                    await socket.send_json({"type": "final", **_transcript_json(final, "stream")})
                    await socket.close(1000)
                    return
                else:
                    raise ValueError('send binary PCM chunks, then {"type": "end"}')
        except ValueError as err:
            counts["rejected"] += 1
            await _close_with_error(socket, 1003, str(err))
        except WebSocketDisconnect:
            return

    return app


def _stream_header(text: str) -> dict:
    """The checked stream header; ``ValueError`` says what is wrong."""
    try:
        header = json.loads(text)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict):
        raise ValueError('the first message must be a JSON header such as {"sample_rate": 16000, "encoding": '
                         '"pcm_s16le"}')
    rate = header.get("sample_rate")
    if rate != SAMPLE_RATE:
        raise ValueError(f"sample_rate {rate!r} in the stream header: the service takes {SAMPLE_RATE} Hz PCM; "
                         "resample on the client")
    header.setdefault("encoding", "pcm_s16le")
    if header["encoding"] not in ENCODINGS:
        raise ValueError(f"encoding {header['encoding']!r}: use one of {', '.join(ENCODINGS)}")
    return header


def _is_end(text: str | None) -> bool:
    if text is None:
        return False
    try:
        return json.loads(text) == {"type": "end"}
    except json.JSONDecodeError:
        return False


async def _close_with_error(socket, code: int, message: str) -> None:
    try:
        await socket.send_json({"type": "error", "error": message})
        await socket.close(code)
    except Exception:  # the client went away first
        await asyncio.sleep(0)


def _transcript_json(result, name: str) -> dict:
    return {"name": name, "text": result.text, "seconds": round(result.seconds, 3),
            "log_likelihood": result.log_likelihood,
            "words": [{"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3),
                       "confidence": round(w.confidence, 4)} for w in result.words]}


def _backend(recognizer) -> str:
    from cssl.deploy.onnx_model import OnnxCTCModel

    model = recognizer.model
    if isinstance(model, OnnxCTCModel):
        return f"onnxruntime ({model.meta.quantization} weights)"
    return f"pytorch ({recognizer.precision}, {recognizer.device})"
