"""Per-sample pipelining on the openai backend, against a loopback server that sees every request.

- the pipelined schedule gives the same trajectories as the turn-synchronous one (the same texts, the same crops);
- `mgpo eval --backend openai --concurrency 8` keeps the server at 8 requests in flight (the Bar asks >= 6), where a
  turn barrier cannot;
- a sample whose turn 1 is slow does not delay the other samples' turn 2: the server holds it until every other
  sample's turn 2 has arrived, which only a pipelined client can do;
- a run cut short and resumed gives the rows of an uninterrupted one.
"""

from __future__ import annotations

import json
import statistics
import threading
from pathlib import Path
from typing import Any

import pytest

from mgpo.backends.openai import OpenAIBackend
from mgpo.engine import Engine
from mgpo.eval.run_log import read_rows
from mgpo.eval.synth import write_synth
from mgpo.protocol import ProtocolConfig
from mgpo.sampling import Sampling
from mgpo.types import Sample

from .loopback import Call, Loopback, fifo_gate, loopback_server

N = 16
PIXELS = {"min_pixels": 3136, "max_pixels": 50176, "crop_min_pixels": 3136, "crop_max_pixels": 50176}
FAST = ["--min-pixels", "3136", "--max-pixels", "50176", "--crop-min-pixels", "3136", "--crop-max-pixels", "50176"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipe") / "d"
    write_synth(out, n=N, seed=5)
    return out


def samples_of(data: Path, n: int = N) -> list[Sample]:
    import pandas as pd

    frame = pd.read_parquet(data / "test.parquet").head(n)
    return [Sample(str(data / r.image), r.question, list(r.options), r.label, r.question_id,
                   meta={"seed_key": f"k{i}"}) for i, r in enumerate(frame.itertuples())]  # fmt: skip


def without_timings(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def backend(url: str, concurrency: int = 8, **kw: Any) -> OpenAIBackend:
    return OpenAIBackend("loopback", base_url=url, concurrency=concurrency, max_retries=0, **kw)


def eval_args(data: Path, url: str, out: Path, *extra: str) -> list[str]:
    return ["eval", "--task", "mgpo_vstar", "--data", str(data), "--backend", "openai", "--base-url", url, "--model",
            "loopback", "--concurrency", "8", "--output-dir", str(out), *FAST, *extra]  # fmt: skip


def run_cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from mgpo.cli import app

    result = CliRunner().invoke(app, args, env={"COLUMNS": "160", "HF_DATASETS_OFFLINE": "1"})
    assert result.exit_code == 0, (result.output, result.exception)


def test_pipelined_trajectories_equal_turn_synchronous(data: Path) -> None:
    cfg = ProtocolConfig.paper(**PIXELS)
    seeded = Sampling.make("paper", None, None, 7)  # sampled: per-sample, per-turn seeds must travel unchanged
    with loopback_server() as server:
        piped_be, sync_be = backend(server.url, decoding=seeded), backend(server.url, decoding=seeded)
        finished: list[int] = []
        piped = Engine(piped_be, cfg).run(samples_of(data), on_done=lambda i, t: finished.append(i))
        sync = Engine(sync_be, cfg, pipelined=False).run(samples_of(data), batch_size=4)
    assert Engine(piped_be, cfg).pipelines and not Engine(sync_be, cfg, pipelined=False).pipelines
    assert sorted(finished) == list(range(N))
    assert [without_timings(t.to_dict()) for t in piped] == [without_timings(t.to_dict()) for t in sync]
    assert all(len(t.turns) == 2 and t.turns[0].box_original and t.error is None for t in piped)  # the crop loop ran
    assert len({t.answer for t in piped}) > 1  # answers differ per sample: a shuffled order would show


def test_eval_keeps_eight_requests_in_flight(data: Path, tmp_path: Path) -> None:
    """The Bar: `mgpo eval --backend openai --concurrency 8` keeps >= 6 in flight. The server answers one request at
    a time, only while 8 are out (or after a quiet spell): in-flight at each answer is what the client sustains."""
    with loopback_server(fifo_gate(8, quiet=0.5)) as server:
        run_cli(eval_args(data, server.url, tmp_path / "o"))
    answered = server.released_in_flight
    median = statistics.median(answered)
    print(f"in flight: max {server.max_in_flight}, median at each answer {median}, over {len(answered)} requests")
    assert len(answered) == 2 * N and len(read_rows(tmp_path / "o" / "trajectories.jsonl")) == N
    assert server.max_in_flight >= 6 and median >= 6


def test_a_turn_barrier_fails_the_same_gate(data: Path) -> None:
    """The control: the same gate against the turn-synchronous schedule sees the barrier (fewer in flight)."""
    cfg = ProtocolConfig.paper(**PIXELS)
    with loopback_server(fifo_gate(8, quiet=0.1)) as server:
        Engine(backend(server.url), cfg, pipelined=False).run(samples_of(data, 8), batch_size=8)
    assert statistics.median(server.released_in_flight) < 6


def slow_first_turn(limit: float) -> tuple[Any, dict[str, Any]]:
    """A hold that keeps the first turn-1 request until every other sample's turn 2 has arrived (or ``limit`` s)."""
    seen: dict[str, Any] = {"slow": None, "released_by": None, "order": []}
    lock = threading.Lock()

    def others_done(state: Loopback) -> bool:
        turn2 = {c.sample for c in state.calls if c.turn == 1}
        samples = {c.sample for c in state.calls}
        return len(samples) == N and len(turn2 - {seen["slow"]}) == N - 1

    def hold(state: Loopback, call: Call) -> None:
        with lock:
            seen["order"].append((call.sample, call.turn))
            if seen["slow"] is None and call.turn == 0:
                seen["slow"] = call.sample
            slow = call.sample == seen["slow"] and call.turn == 0
        if slow:
            with state.cond:
                ok = state.cond.wait_for(lambda: others_done(state), timeout=limit)
            seen["released_by"] = "others' turn 2" if ok else "timeout"

    return hold, seen


def test_slow_turn_one_does_not_delay_other_samples(data: Path, tmp_path: Path) -> None:
    hold, seen = slow_first_turn(limit=60)
    with loopback_server(hold) as server:
        run_cli(eval_args(data, server.url, tmp_path / "o"))
    assert seen["released_by"] == "others' turn 2"
    slow_turn2 = seen["order"].index((seen["slow"], 1))
    others_turn2 = [i for i, (s, t) in enumerate(seen["order"]) if t == 1 and s != seen["slow"]]
    assert len(others_turn2) == N - 1 and max(others_turn2) < slow_turn2
    rows = read_rows(tmp_path / "o" / "trajectories.jsonl")
    assert len(rows) == N and all(len(r["trajectory"]["turns"]) == 2 for r in rows)
    assert server.max_in_flight <= 8


def test_a_turn_barrier_delays_them(data: Path) -> None:
    """The control: turn-synchronous, the other samples' turn 2 waits for the slow turn 1 (released by timeout)."""
    hold, seen = slow_first_turn(limit=1.0)
    with loopback_server(hold) as server:
        Engine(backend(server.url), ProtocolConfig.paper(**PIXELS), pipelined=False).run(samples_of(data), batch_size=N)
    assert seen["released_by"] == "timeout"


def test_resumed_pipelined_eval_equals_an_uninterrupted_one(data: Path, tmp_path: Path) -> None:
    with loopback_server() as server:
        run_cli(eval_args(data, server.url, tmp_path / "full"))
        run_cli(eval_args(data, server.url, tmp_path / "cut", "--limit", "5"))
        run_cli(eval_args(data, server.url, tmp_path / "cut", "--resume"))
    full = {r["doc_id"]: without_timings(r) for r in read_rows(tmp_path / "full" / "trajectories.jsonl")}
    cut = {r["doc_id"]: without_timings(r) for r in read_rows(tmp_path / "cut" / "trajectories.jsonl")}
    assert len(full) == N and full == cut
    a = json.loads((tmp_path / "full" / "results.json").read_text())["tasks"]["mgpo_vstar"]["overall"]
    b = json.loads((tmp_path / "cut" / "results.json").read_text())["tasks"]["mgpo_vstar"]["overall"]
    assert a == b


def test_turn_one_images_are_encoded_by_the_loaders_not_the_request_threads(data: Path, monkeypatch) -> None:
    """The request threads only send: turn 1's image is resized and encoded while it loads (Backend.prepare), and
    only the crops (which exist once turn 1 has answered) are encoded on the request side."""
    import mgpo.backends.openai as openai_backend

    threads: list[tuple[str, tuple[int, int]]] = []
    real = openai_backend.encode_png

    def spy(image):
        threads.append((threading.current_thread().name, image.size))
        return real(image)

    monkeypatch.setattr(openai_backend, "encode_png", spy)
    cfg = ProtocolConfig.paper(**PIXELS)
    with loopback_server() as server:
        trajs = Engine(backend(server.url), cfg).run(samples_of(data))
    assert all(len(t.turns) == 2 and t.turns[0].box_original for t in trajs)
    loaders = [name for name, _ in threads if name.startswith("mgpo-load")]
    requests = [name for name, _ in threads if name.startswith("mgpo-request")]
    assert len(loaders) == N  # every turn-1 image, once each (turn 2 resends it from the cache)
    assert len(requests) == N  # every crop, once each
    assert len(threads) == 2 * N
