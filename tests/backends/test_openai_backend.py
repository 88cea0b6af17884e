"""The openai backend against real HTTP servers on 127.0.0.1: `transformers serve` with the tiny model, and a small
scripted server for retries, concurrency and authorisation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mgpo import imaging, protocol
from mgpo.backends import make_backend
from mgpo.backends.base import Request
from mgpo.backends.hf import render_inputs
from mgpo.backends.openai import OpenAIBackend, to_model_frame
from mgpo.engine import Engine
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig
from mgpo.types import Sample, Trajectory

from .serving import refused_url, transformers_server


@pytest.fixture(scope="module")
def server_url(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`transformers serve` with the tiny model on the port it bound (port 0); always stopped afterwards."""
    with transformers_server(tiny_model_dir, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("MGPO_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "mgpo.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# ---------------------------------------------------------------------------------------------------------------
# Against `transformers serve`


def test_infer_against_transformers_serve(server_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    Image.new("RGB", (1500, 1000), (120, 90, 60)).save(image)
    result = run_cli(
        "infer", str(image), "What colour is the cup?", "-c", "red", "-c", "blue", "--ground-truth", "A",
        "--backend", "openai", "--base-url", server_url, "--model", str(tiny_model_dir),
        "--max-new-tokens", "12", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    traj = Trajectory.from_dict(json.loads(result.stdout))
    assert traj.error is None
    assert len(traj.turns) == 2  # the paper's two turns: turn 2 runs whatever turn 1 wrote
    cfg = ProtocolConfig.paper()
    view = imaging.pre_resize_size((1500, 1000), cfg.min_pixels, cfg.max_pixels)
    first = traj.turns[0]
    assert first.frame_size == list(imaging.model_frame(view, cfg.processor_min_pixels, cfg.processor_max_pixels))
    assert first.visual_tokens == imaging.visual_tokens(tuple(first.frame_size))
    for turn in traj.turns:
        assert 0 < turn.output_tokens <= 12
    # turn 2 is shown turn 1's crop, or the whole original when turn 1 gave no valid box (a random model rarely does)
    assert traj.turns[1].shown_box == (traj.turns[0].box_original or [0, 0, 1500, 1000])
    assert traj.turns[1].box_original is None  # the final turn answers; it is never grounded
    assert traj.correct is (traj.answer == "A")  # scored against --ground-truth A


def test_server_sees_the_model_frame(server_url: str, tiny_model_dir: Path, tiny_processor) -> None:
    """The prompt the server tokenised has exactly the visual tokens of the frame the engine computed."""
    cfg = ProtocolConfig.paper()
    backend = make_backend("openai", str(tiny_model_dir), protocol=cfg, base_url=server_url, max_new_tokens=4)
    image = Image.new("RGB", (1001, 703), (10, 200, 30))  # sides far from multiples of 28
    crop = Image.new("RGB", (333, 150), (200, 10, 30))
    messages = [
        *protocol.first_turn_messages(cfg, image, "Where?", []),
        protocol.assistant_message("here"),
        protocol.followup_message(crop, "Where?", ["a", "b"], cropped=True, final=True),
    ]
    gen = backend.generate([Request(messages, 0, 1)])[0]
    assert gen.error is None, gen.error
    framed = [
        {**m, "content": [
            {**p, "image": to_model_frame(p["image"], cfg.processor_min_pixels, cfg.processor_max_pixels)}
            if p["type"] == "image" else p for p in m["content"]
        ]} for m in messages
    ]  # fmt: skip
    expected = int(render_inputs(tiny_processor, [framed])["input_ids"].shape[1])
    assert gen.prompt_tokens == expected
    # and the frames are what the engine records as each turn's frame_size
    for img in (image, crop):
        frame = imaging.model_frame(img.size, cfg.processor_min_pixels, cfg.processor_max_pixels)
        assert to_model_frame(img, cfg.processor_min_pixels, cfg.processor_max_pixels).size == frame
    backend.close()


# ---------------------------------------------------------------------------------------------------------------
# Unreachable server: one clear line; inside a run: per-sample errors, never an exception


def test_unreachable_server_is_one_clear_line(tmp_path: Path) -> None:
    image = tmp_path / "img.png"
    Image.new("RGB", (200, 200)).save(image)
    with refused_url() as url:
        result = run_cli("infer", str(image), "What?", "--backend", "openai", "--base-url", url, timeout=120)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "cannot reach the OpenAI-compatible server" in lines[0] and url in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_base_url_and_api_key_env_are_clear() -> None:
    with pytest.MonkeyPatch.context() as mp:
        for k in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
            mp.delenv(k, raising=False)
        with pytest.raises(MgpoError, match="--base-url"):
            OpenAIBackend("m")
        mp.delenv("MGPO_TEST_NO_SUCH_KEY", raising=False)
        with pytest.raises(MgpoError, match="MGPO_TEST_NO_SUCH_KEY"):
            OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env="MGPO_TEST_NO_SUCH_KEY", check=False)
        with pytest.raises(MgpoError, match="no option 'bogus'"):
            OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", check=False, bogus=1)


def test_server_gone_mid_run_records_errors_per_sample() -> None:
    """What eval relies on: a dead server gives every sample an error quickly; nothing raises; resume can redo them."""
    samples = [Sample(Image.new("RGB", (300, 200)), f"q{i}", ["x", "y"], "A", id=str(i)) for i in range(6)]
    with refused_url() as url:
        backend = OpenAIBackend("m", base_url=url, check=False, max_retries="2", backoff="0.01", concurrency="4")
        trajs = Engine(backend, ProtocolConfig.paper()).run(samples)
    assert len(trajs) == 6
    for t in trajs:
        assert t.error and "cannot reach the OpenAI-compatible server" in t.error
        assert t.correct is False


# ---------------------------------------------------------------------------------------------------------------
# A scripted local server: retries, no retries on 4xx, concurrency, authorisation


class Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, statuses: list[int], gate: int = 0):
        super().__init__(("127.0.0.1", 0), Handler)
        self.statuses = list(statuses)  # status per POST, then 200s
        # with gate=n, each request waits until n are in flight at once: overlap proven by events, not by timing
        self.gate = threading.Barrier(gate) if gate else None
        self.posts: list[dict] = []
        self.headers_seen: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.error_body: object = None  # what a failing POST answers; None: an OpenAI-style error object
        self.models_body: object = None  # what GET /models answers; None: one served model

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        models = self.server.models_body
        self._send(200, {"object": "list", "data": [{"id": "served-model"}]} if models is None else models)

    def do_POST(self) -> None:
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.posts.append(body)
            srv.headers_seen.append(dict(self.headers))
            status = srv.statuses.pop(0) if srv.statuses else 200
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        if srv.gate is not None:
            srv.gate.wait(timeout=60)  # raises (and the request fails) unless `gate` requests overlap
        with srv.lock:
            srv.in_flight -= 1
        if status != 200:
            failure = srv.error_body
            self._send(status, {"error": {"message": f"scripted failure {status}"}} if failure is None else failure)
            return
        text = body["messages"][-1]["content"][-1]["text"] if isinstance(body["messages"][-1]["content"], list) else ""
        self._send(200, {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo {text[-10:]}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3},
        })  # fmt: skip

    def _send(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def scripted() -> Iterator[callable]:
    servers: list[Scripted] = []

    def start(statuses: list[int] = (), gate: int = 0) -> Scripted:
        srv = Scripted(list(statuses), gate)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def one_request(text: str = "hello") -> Request:
    image = Image.new("RGB", (640, 480), (1, 2, 3))
    return Request([protocol.user_message(image, "", text)], 0, 0, max_new_tokens=5)


def test_retries_429_and_5xx_then_succeeds(scripted) -> None:
    srv = scripted([429, 503, 502])
    backend = OpenAIBackend(None, base_url=srv.url, max_retries=3, backoff=0.01)
    assert backend.model == "served-model"  # no model given: the first one the server lists
    gen = backend.generate([one_request()])[0]
    assert gen.error is None and gen.text.startswith("echo")
    assert (gen.output_tokens, gen.prompt_tokens) == (3, 11)
    assert len(srv.posts) == 4
    body = srv.posts[-1]
    assert body["max_tokens"] == 5 and body["temperature"] == 0.0
    part = body["messages"][0]["content"][0]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")


def test_gives_up_after_max_retries_and_does_not_retry_4xx(scripted) -> None:
    srv = scripted([500, 500, 500])
    gen = OpenAIBackend("m", base_url=srv.url, max_retries=2, backoff=0.01).generate([one_request()])[0]
    assert gen.error and "after 2 retries" in gen.error and "scripted failure 500" in gen.error
    assert len(srv.posts) == 3
    srv = scripted([400])
    gen = OpenAIBackend("m", base_url=srv.url, max_retries=5, backoff=0.01).generate([one_request()])[0]
    assert gen.error and "HTTP 400" in gen.error and "scripted failure 400" in gen.error
    assert len(srv.posts) == 1


def test_concurrent_requests_keep_order(scripted) -> None:
    srv = scripted(gate=4)  # the server answers only once 4 requests are in flight together
    backend = OpenAIBackend("m", base_url=srv.url, concurrency=4, max_retries=0)
    requests = [one_request(f"question {i:02d}") for i in range(8)]
    gens = backend.generate(requests)
    assert all(g.error is None for g in gens), [g.error for g in gens]
    assert [g.text for g in gens] == [f"echo uestion {i:02d}" for i in range(8)]
    assert srv.max_in_flight == 4  # overlapped (the gate), never more than --concurrency


def test_api_key_from_environment_sent_never_shown(scripted, monkeypatch) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MGPO_TEST_KEY", secret)
    srv = scripted([401])
    backend = OpenAIBackend("m", base_url=srv.url, api_key_env="MGPO_TEST_KEY", max_retries=0)
    gen = backend.generate([one_request()])[0]
    assert srv.headers_seen[0]["Authorization"] == f"Bearer {secret}"
    assert gen.error and "not authorised" in gen.error and secret not in gen.error
    assert secret not in repr(backend)


def test_same_image_encoded_once_across_turns(scripted) -> None:
    srv = scripted()
    backend = OpenAIBackend("m", base_url=srv.url)
    image = Image.new("RGB", (900, 700), (5, 6, 7))
    calls = []
    original = backend._urls.get

    def counting(img, make):
        return original(img, lambda: calls.append(1) or make())

    backend._urls.get = counting  # type: ignore[method-assign]
    req1 = Request([protocol.user_message(image, "", "a")], 0, 0)
    req2 = Request([*req1.messages, protocol.assistant_message("b"), protocol.user_message(image, "x", "c")], 0, 1)
    backend.generate([req1])
    backend.generate([req2])
    assert len(calls) == 1


@settings(max_examples=60, deadline=None)
@given(w=st.integers(28, 5000), h=st.integers(28, 5000))
def test_model_frame_is_a_fixed_point_of_the_servers_rounding(w: int, h: int) -> None:
    """An image sent at its frame comes out of the processor's smart_resize unchanged."""
    if max(w, h) / min(w, h) > imaging.MAX_ASPECT:
        return
    lo, hi = protocol.PROCESSOR_PIXELS
    frame = imaging.model_frame((w, h), lo, hi)
    assert imaging.model_frame(frame, lo, hi) == frame


def test_options_arrive_as_text_from_model_args(scripted) -> None:
    """lmms-eval --model_args give every value as a string; make_backend takes them by name."""
    srv = scripted()
    backend = make_backend("openai", "m", base_url=srv.url, concurrency="3", timeout="30", max_retries="1",
                           backoff="0.5", max_new_tokens="7", sampling='{"temperature": 0.5, "seed": 3}',
                           check="true", device="cuda", batch_size="16")  # fmt: skip
    assert (backend.concurrency, backend.max_retries, backend.max_new_tokens) == (3, 1, 7)
    backend.generate([Request(one_request().messages, 0, 0)])
    body = srv.posts[-1]
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (7, 0.5, 3)
    with pytest.raises(MgpoError, match="sampling must be a JSON object"):
        make_backend("openai", "m", base_url=srv.url, sampling="temperature=0.5")


def test_without_a_cap_the_request_carries_the_default_output_cap(scripted) -> None:
    """hf and vllm cap a turn at 8192 tokens by default; a server left to its own default may run to its context."""
    from mgpo.backends.base import DEFAULT_MAX_NEW_TOKENS

    srv = scripted()
    OpenAIBackend("m", base_url=srv.url).generate([Request(one_request().messages, 0, 0)])
    assert srv.posts[-1]["max_tokens"] == DEFAULT_MAX_NEW_TOKENS


def test_a_json_list_error_body_fails_only_its_own_requests(scripted) -> None:
    srv = scripted([400, 200, 400])
    srv.error_body = [{"message": "bad request, as a list"}]
    backend = OpenAIBackend("m", base_url=srv.url, concurrency=1, max_retries=0)
    gens = backend.generate([one_request("a"), one_request("b"), one_request("c")])
    assert [g.error is None for g in gens] == [False, True, False]
    assert "HTTP 400" in gens[0].error and "bad request, as a list" in gens[0].error


def test_a_failed_start_closes_the_client(scripted, monkeypatch) -> None:
    srv = scripted()
    srv.models_body = {"data": []}  # alive, but lists no model
    closed = []
    monkeypatch.setattr("httpx.Client.close", lambda self: closed.append(True))
    with pytest.raises(MgpoError, match="cannot list the served models"):
        OpenAIBackend(None, base_url=srv.url)
    assert closed
