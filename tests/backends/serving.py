"""Starting and stopping `transformers serve` with a local model on 127.0.0.1, for the openai backend's tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

SERVER_START_TIMEOUT = 120  # seconds; loading the tiny model takes a few


def free_port() -> int:
    """A port the OS just handed out and released, for servers that must be told their port on the command line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
def transformers_server(model_dir: Path, port: int, log: Path) -> Iterator[str]:
    """`transformers serve` on 127.0.0.1:port, ready when this yields its /v1 URL; stopped on exit, whatever happens."""
    pytest.importorskip("fastapi", reason="transformers serve needs fastapi and uvicorn (pip install 'mgpo[dev]')")
    cmd = [transformers_cli(), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after {SERVER_START_TIMEOUT}s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
