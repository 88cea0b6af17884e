"""Faults during `mgpo eval`, through real processes: SIGKILL at seeded random points then --resume gives the same
per-sample results as an uninterrupted run, and a server that dies, answers garbage or hangs mid-eval ends the run
with one line, keeps every finished sample and lets --resume finish the rest.

The model is a loopback OpenAI-compatible server written here (http.server on an OS-chosen port). It answers from
the conversation alone (a box on turn 1, a letter derived from the question on turn 2), so every run gives the
same outputs, and it is also the test's clock: a kill happens when the server receives its N-th request, never
after a guessed sleep or a count of finished rows polled from disk.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mgpo.eval.run_log import read_rows, row_key

N = 6  # samples: 12 chat requests for an uninterrupted run
TIMING = ("seconds",)


def reply(body: dict[str, Any]) -> str:
    """The fake model's turn: deterministic in the conversation, like a greedy model."""
    messages = body["messages"]
    turn = sum(m["role"] == "assistant" for m in messages)
    first_user = next(m for m in messages if m["role"] == "user")
    text = "".join(p.get("text", "") for p in first_user["content"]) if isinstance(first_user["content"], list) \
        else first_user["content"]  # fmt: skip
    digest = hashlib.sha256(text.encode()).digest()
    if turn == 0:
        x, y = 20 + digest[0] % 200, 20 + digest[1] % 200
        return f'```json\n[{{"bbox_2d": [{x}, {y}, {x + 120}, {y + 100}], "label": "target"}}]\n```'
    return f"The target is visible. \\boxed{{{'ABCD'[digest[2] % 4]}}}"


class FakeServer:
    """An OpenAI-compatible /v1 on 127.0.0.1 (port 0). ``on_chat(n)`` runs when the n-th chat request arrives
    (1-based) and may return a fault: 'garbage' (HTTP 200, not JSON), 'hang' (no answer until closed) or 'die' (the
    server stops listening and drops the connection)."""

    def __init__(self) -> None:
        self.chats = 0
        self.on_chat: Callable[[int], str | None] = lambda n: None
        self.on_models: Callable[[], None] = lambda: None
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: bytes, kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # /v1/models
                server.on_models()
                self._send(200, json.dumps({"data": [{"id": "fake"}]}).encode())

            def do_POST(self) -> None:  # /v1/chat/completions
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.chats += 1
                    n = server.chats
                fault = server.on_chat(n)
                if fault == "garbage":
                    return self._send(200, b"<html>502 upstream hiccup</html>", "text/html")
                if fault == "hang":
                    server.release.wait(60)
                    self.close_connection = True
                    return None
                if fault == "die":
                    threading.Thread(target=server.httpd.shutdown, daemon=True).start()
                    server.httpd.socket.close()
                    self.close_connection = True
                    return None
                text = reply(body)
                answer = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 100, "completion_tokens": len(text.split())}}  # fmt: skip
                return self._send(200, json.dumps(answer).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        with suppress(OSError):
            self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@contextmanager
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


LOOPBACK = {"NO_PROXY": "127.0.0.1,localhost"}  # the offline env routes everything else to a refusing proxy


def run(kit, args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return kit.run(args, cwd=cwd, timeout=timeout, **LOOPBACK)


def eval_args(kit, data: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [str(kit.bin / "mgpo"), "eval", "--task", "mgpo_vstar", "--data", str(data), "--limit", str(N),
            "--backend", "openai", "--base-url", url, "--model", "fake", "--concurrency", "1", "--max-retries", "0",
            "--output-dir", str(out), *kit.fast, *extra]  # fmt: skip


def comparable(path: Path) -> list[str]:
    """Per-sample rows sorted by key, timing fields removed, as canonical JSON: byte-comparable across runs."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMING}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    rows = sorted(read_rows(path), key=row_key)
    return [json.dumps(strip(r), sort_keys=True, ensure_ascii=False) for r in rows]


def last_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def run_killed(kit, args: list[str], server: FakeServer, point: tuple[str, int]) -> int:
    """Run the command and SIGKILL it when the server sees the chosen request; the exit code (-9 when killed)."""
    where, n = point
    running: list[subprocess.Popen] = []
    server.chats = 0
    server.on_models = (lambda: running[0].kill()) if where == "start" else (lambda: None)
    server.on_chat = (lambda i: running[0].kill() if i == n else None) if where == "chat" else (lambda i: None)
    proc = subprocess.Popen(
        args, cwd=kit.repo, env=kit.env(**LOOPBACK), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    running.append(proc)
    try:
        return proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def reference(synth_dir: Path, kit, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The uninterrupted run's per-sample rows."""
    out = tmp_path_factory.mktemp("ref") / "o"
    with fake_server() as server:
        proc = run(kit, eval_args(kit, synth_dir, out, server.url), cwd=kit.repo, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = comparable(out / "trajectories.jsonl")
    assert len(rows) == N
    return rows


def test_sigkill_at_five_random_points_then_resume_is_identical(reference, synth_dir, kit, tmp_path) -> None:
    out = tmp_path / "o"
    rng = random.Random(12)
    points = [("start", 0) if rng.random() < 0.2 else ("chat", rng.randint(1, 4)) for _ in range(5)]
    killed = 0
    with fake_server() as server:
        for i, point in enumerate(points):
            args = eval_args(kit, synth_dir, out, server.url, *(["--resume"] if i else []))
            code = run_killed(kit, args, server, point)
            assert code == -9, f"kill {i} at {point} did not land (exit {code})"
            killed += 1
        assert 0 < len(read_rows(out / "trajectories.jsonl")) < N  # the kills left work for the last --resume
        server.on_models, server.on_chat = (lambda: None), (lambda i: None)
        done = run(kit, [*eval_args(kit, synth_dir, out, server.url), "--resume"], cwd=kit.repo, timeout=300)
    assert killed == 5
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (out / "trajectories.jsonl").read_text(encoding="utf-8").splitlines()
    assert len({row_key(json.loads(x)) for x in lines}) == N  # no sample lost; a torn tail was cut, not kept
    assert comparable(out / "trajectories.jsonl") == reference
    results = json.loads((out / "results.json").read_text())["tasks"]["mgpo_vstar"]
    assert results["overall"]["n"] == N


@pytest.mark.parametrize("fault", ["die", "garbage", "hang"])
def test_a_failing_server_keeps_finished_samples(fault, reference, synth_dir, kit, tmp_path) -> None:
    """The server fails on request 7 (sample 4's first turn): samples 1-3 are finished and must be kept."""
    out = tmp_path / "o"
    with fake_server() as server:
        server.on_chat = lambda n: fault if n >= 7 else None
        args = eval_args(kit, synth_dir, out, server.url, *(["--timeout", "2"] if fault == "hang" else []))
        proc = run(kit, args, cwd=kit.repo, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = last_line(proc)
    assert line.startswith("error: ") and "failed in the backend" in line and "--resume" in line, line
    rows = {row_key(r): r for r in read_rows(out / "trajectories.jsonl")}
    finished = [r for r in rows.values() if not r["trajectory"].get("error")]
    assert len(finished) == 3
    mine = comparable(out / "trajectories.jsonl")
    assert [x for x in mine if not json.loads(x)["trajectory"].get("error")] == reference[:3]  # kept as they were
    failed = [r for r in rows.values() if r["trajectory"].get("error")]
    assert failed and all(r["trajectory"]["error_kind"] == "backend" for r in failed)
    with fake_server() as server:  # the server is back (on another port): --resume runs only what failed
        resumed = run(kit, [*eval_args(kit, synth_dir, out, server.url), "--resume"], cwd=kit.repo, timeout=300)
        assert server.chats == 2 * (N - 3)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert comparable(out / "trajectories.jsonl") == reference
