"""cssl serve end to end over loopback: real HTTP and WebSocket clients (httpx, websockets), concurrent clients,
bad input answered with 4xx, and the page driven in a real headless browser when one is installed."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cssl.serve.app import Limits, build_app
from tests.conftest import tone, write
from tests.test_streaming import recognizer

httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")
uvicorn = pytest.importorskip("uvicorn")

STREAM = {"left_seconds": 1.0, "right_seconds": 0.4, "update_seconds": 0.3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A service on a loopback port, in a thread, for the module's tests; yields (base URL, recognizer, folder)."""
    folder = tmp_path_factory.mktemp("serve")
    rec = recognizer(folder)
    app = build_app(rec, "test-model", Limits(max_upload_mb=0.5, max_seconds=8.0, max_stream_seconds=6.0), STREAM)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", ws="websockets-sansio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"127.0.0.1:{port}", rec, folder
    server.should_exit = True
    thread.join(timeout=10)


def clip(folder: Path, name: str, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write(folder / name, tone(seconds, 200 + 50 * seed) + 0.2 * rng.standard_normal(int(seconds * 16000)))


def words(result) -> list:
    return [(w.word, round(w.start, 3), round(w.end, 3)) for w in result.words]


def test_health_and_page(service) -> None:
    host, rec, _ = service
    health = httpx.get(f"http://{host}/health").json()
    assert health["status"] == "ok" and health["model"] == "test-model"
    assert health["symbols"] == len(rec.vocab) and health["backend"].startswith("pytorch")
    page = httpx.get(f"http://{host}/")
    assert page.status_code == 200 and 'id="transcript"' in page.text and "/transcribe" in page.text


def test_a_posted_file_gets_the_recognizer_transcript(service) -> None:
    host, rec, folder = service
    path = clip(folder, "a.wav", 2.5, 1)
    want = rec.transcribe(path)
    for reply in (httpx.post(f"http://{host}/transcribe", content=path.read_bytes()),
                  httpx.post(f"http://{host}/transcribe", files={"file": ("a.wav", path.read_bytes(), "audio/wav")})):
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["text"] == want.text and want.text
        assert [(w["word"], w["start"], w["end"]) for w in body["words"]] == words(want)
        assert [w["confidence"] for w in body["words"]] == pytest.approx([w.confidence for w in want.words], abs=1e-4)
    assert reply.json()["name"] == "a.wav"


def test_bad_uploads_get_4xx_with_a_message(service) -> None:
    host, _, folder = service
    url = f"http://{host}/transcribe"
    cases = {
        "not audio": (httpx.post(url, content=b"this is not audio at all" * 10), 415, "not audio"),
        "empty": (httpx.post(url, content=b""), 400, "zero length"),
        "too large": (httpx.post(url, content=b"\0" * (600 * 1024)), 413, "limit is 0.5 MB"),
        "too long": (httpx.post(url, content=clip(folder, "long.flac", 9.0, 2).read_bytes()), 413, "limit is 8 s"),
        "no length": (httpx.post(url, content=iter([b"RIFF", b"...."])), 411, "Content-Length"),
        "form without file": (httpx.post(url, files={"other": ("x", b"abc")}), 400, "named 'file'"),
    }
    for name, (reply, status, text) in cases.items():
        assert reply.status_code == status, (name, reply.status_code, reply.text)
        assert text in reply.json()["error"], name
    assert httpx.get(f"http://{host}/health").json()["status"] == "ok"  # still up


async def stream_over_socket(host: str, wave: np.ndarray, header: dict, chunk: int = 2560) -> list[dict]:
    messages = []
    async with websockets.connect(f"ws://{host}/stream") as ws:
        await ws.send(json.dumps(header))
        messages.append(json.loads(await ws.recv()))
        if messages[-1]["type"] != "ready":
            return messages
        scale, dtype = (32767, np.int16) if header.get("encoding", "pcm_s16le") == "pcm_s16le" else (1, np.float32)
        try:
            for start in range(0, len(wave), chunk):
                await ws.send((wave[start : start + chunk] * scale).astype(dtype).tobytes())
            await ws.send(json.dumps({"type": "end"}))
        except websockets.ConnectionClosed:  # the service closed the stream (its reason is among the messages)
            pass
        try:
            async for message in ws:
                messages.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass
    return messages


def test_a_websocket_stream_gets_partials_and_the_final_result(service) -> None:
    host, rec, _ = service
    rng = np.random.default_rng(3)
    wave = (0.3 * rng.standard_normal(16000 * 4)).astype(np.float32)
    messages = asyncio.run(stream_over_socket(host, wave, {"sample_rate": 16000, "encoding": "pcm_f32le"}))
    assert messages[0]["type"] == "ready" and messages[-1]["type"] == "final"
    partials = [m for m in messages if m["type"] == "partial"]
    assert len(partials) >= 3 and all(p["text"].startswith(p["stable"]) for p in partials)
    local = rec.stream(**STREAM)
    for start in range(0, len(wave), 2560):
        local.accept(wave[start : start + 2560])
    want = local.finish()
    assert messages[-1]["text"] == want.text and want.text
    assert [(w["word"], w["start"], w["end"]) for w in messages[-1]["words"]] == words(want)
    s16 = asyncio.run(stream_over_socket(host, wave.clip(-1, 1), {"sample_rate": 16000}))  # 16-bit PCM
    assert s16[-1]["type"] == "final" and s16[-1]["seconds"] == pytest.approx(4.0)


def test_bad_streams_are_refused_with_a_reason(service) -> None:
    host, _, _ = service

    async def refused(header_text: str) -> tuple[dict, int]:
        async with websockets.connect(f"ws://{host}/stream") as ws:
            await ws.send(header_text)
            message = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            return message, ws.close_code

    message, code = asyncio.run(refused(json.dumps({"sample_rate": 44100})))
    assert message["type"] == "error" and "16000 Hz" in message["error"] and code == 1003
    message, code = asyncio.run(refused("hello"))
    assert "JSON header" in message["error"] and code == 1003
    message, code = asyncio.run(refused(json.dumps({"sample_rate": 16000, "encoding": "mp3"})))
    assert "pcm_s16le" in message["error"]
    long = np.zeros(16000 * 7, dtype=np.float32)  # over the 6 s stream limit
    messages = asyncio.run(stream_over_socket(host, long, {"sample_rate": 16000, "encoding": "pcm_f32le"}, 16000))
    assert messages[-1]["type"] == "error" and "6 s" in messages[-1]["error"]


def test_eight_concurrent_clients_all_get_their_own_answer(service) -> None:
    host, rec, folder = service
    paths = [clip(folder, f"c{i}.flac", 1.0 + 0.25 * i, 10 + i) for i in range(8)]
    want = [rec.transcribe(p).text for p in paths]

    def post(path: Path) -> str:
        reply = httpx.post(f"http://{host}/transcribe", content=path.read_bytes(), timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()["text"]

    async def streams() -> list[list[dict]]:
        rng = np.random.default_rng(7)
        waves = [(0.3 * rng.standard_normal(16000 * 2)).astype(np.float32) for _ in range(4)]
        header = {"sample_rate": 16000, "encoding": "pcm_f32le"}
        return await asyncio.gather(*(stream_over_socket(host, w, header) for w in waves))

    with ThreadPoolExecutor(8) as pool:
        posted = pool.map(post, paths * 3)  # 24 requests from 8 clients at once
        socket_results = asyncio.run(streams())  # and 4 live streams meanwhile
        assert list(posted) == want * 3
    assert all(r[-1]["type"] == "final" for r in socket_results)


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="needs Debian's chromium and chromium-driver")
def test_the_page_transcribes_an_uploaded_file_in_a_real_browser(service, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    host, rec, folder = service
    path = clip(folder, "browser.wav", 2.0, 4)
    want = rec.transcribe(path)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        browser.get(f"http://{host}/")
        browser.find_element(By.ID, "file").send_keys(str(path))
        WebDriverWait(browser, 30).until(lambda b: "s of audio" in b.find_element(By.ID, "status").text)
        spans = browser.find_elements(By.CSS_SELECTOR, "#transcript span.word")
        assert " ".join(s.text.strip() for s in spans) == want.text
        shades = [float(s.get_attribute("data-confidence")) for s in spans]
        assert shades == pytest.approx([w.confidence for w in want.words], abs=1e-3)
        assert "test-model" in browser.find_element(By.ID, "model").text
    finally:
        browser.quit()


def test_the_serve_command_starts_the_service_on_its_port(tmp_path: Path) -> None:
    """``cssl serve`` as a user runs it: a process listening on the port it was given, answering /health."""
    import subprocess
    import sys

    from tests.test_recognizer import checkpoint

    port = free_port()
    command = [sys.executable, "-m", "cssl", "serve", str(checkpoint(tmp_path)), "--port", str(port), "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None, process.stdout.read() if process.poll() is not None else "no answer in 60 s"
        assert health["model"] == "model.pt" and health["status"] == "ok"
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out
