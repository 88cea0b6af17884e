"""Starting and stopping `transformers serve` with a local model on 127.0.0.1, for the openai backend's tests."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

SERVER_START_TIMEOUT = 120  # seconds; loading the tiny model takes a few
RUNNING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")  # uvicorn names the port it bound


@contextmanager
def refused_url() -> Iterator[str]:
    """A /v1 URL on 127.0.0.1 where every connection is refused: a port bound (by the OS's choice, port 0) but never
    listened on, held for the duration, so no other process can take it and answer in between."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def transformers_cli() -> str:
    exe = Path(sys.executable).parent / "transformers"
    found = str(exe) if exe.exists() else shutil.which("transformers")
    if not found:
        pytest.fail("the `transformers` command is missing; pip install 'transformers[serving]'")
    return found


@contextmanager
def transformers_server(model_dir: Path, log: Path) -> Iterator[str]:
    """`transformers serve` on 127.0.0.1, ready when this yields its /v1 URL; stopped on exit, whatever happens.

    The server binds port 0 itself (the OS's choice, so no other process can take the port in between) and the URL
    is read back from uvicorn's startup line, "Uvicorn running on http://127.0.0.1:PORT"."""
    pytest.importorskip("fastapi", reason="transformers serve needs fastapi and uvicorn (pip install 'mgpo[dev]')")
    cmd = [transformers_cli(), "serve", str(model_dir), "--host", "127.0.0.1", "--port", "0", "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = log.stat().st_size if log.exists() else 0  # the log may hold earlier servers' lines
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        base = None
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            if base is None:
                with log.open("rb") as fh:
                    fh.seek(start)
                    found = RUNNING.search(fh.read().decode(errors="replace"))
                base = found and found.group(1)
            if base:
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after {SERVER_START_TIMEOUT}s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


class GateProxy:
    """A loopback proxy in front of a real server that forwards the first ``budget`` chat requests and then plays
    dead (every connection closed unanswered) until ``revive()``: the server "stops" after an exact amount of work,
    so a test never races a run's progress."""

    def __init__(self, upstream: str, budget: int | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.budget = budget
        self.forwarded = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _relay(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    dead = proxy.budget is not None and proxy.forwarded >= proxy.budget
                    if not dead and method == "POST":
                        proxy.forwarded += 1
                if dead:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                reply = httpx.request(method, proxy.upstream + self.path.removeprefix("/v1"), content=body,
                                      headers=headers, timeout=600)  # fmt: skip
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def do_GET(self) -> None:
                self._relay("GET")

            def do_POST(self) -> None:
                self._relay("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def revive(self) -> None:
        with self.lock:
            self.budget = None

    def __enter__(self) -> GateProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
