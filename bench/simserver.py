"""A loopback OpenAI-compatible server that simulates a continuous-batching engine (vLLM / SGLang-like), for
bench/serve.py.

It does no model work; it spends real time the way a served VLM would, so a client's scheduling shows:

- a request waits until a running slot is free (at most ``--max-running`` sequences, like vLLM's max_num_seqs);
- when admitted, its prompt is prefilled: ``--prefill-ms-per-token`` times its visual plus text tokens (visual
  tokens from each image's size through Qwen2.5-VL's smart_resize, 28-pixel patches merged 2x2; text ~4 characters
  a token); a later turn of the same conversation pays only for what is new (prefix caching);
- every engine step decodes one token for each running sequence and lasts ``--decode-ms`` + ``--decode-ms-per-seq``
  times the running sequences: per-token time grows with the batch, but a full batch is the cheapest per token;
- output lengths are long-tailed (lognormal, seeded by the sample and turn): a grounding turn writes some words and
  then a box inside the image it was shown, an answering turn (its prompt asks for ``\\boxed{}``) some words and then
  ``\\boxed{X}``, so mgpo's crop loop really runs.

``GET /stats`` returns the work done and two measures of how well a client fed it: ``busy_s``, the real time it had
sequences to run (from the first request to the last answer, less the time it sat idle waiting for requests), and
``bound_s``, its capacity bound for that work: the time it would need with every step at ``--max-running``
sequences (prefill time plus output tokens times step(max_running) / max_running). Over a client's wall time, the
first is the busy fraction, the second the share of capacity it got (which the end of a run, when the last long
answers finish alone, keeps below 1 for any client). ``POST /reset`` clears
the counters and the prefix cache between runs.

    python bench/simserver.py --port 0      # prints "listening on http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import math
import random
import re
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATCH = 28  # Qwen2.5-VL: 14-pixel patches, merged 2x2 into one visual token
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS = 3136, 12_845_056
SAMPLE_TAG = re.compile(r"\[item (\d+)\]")  # the bench writes it into each question: one sample's lengths everywhere


@dataclass
class SimConfig:
    """The simulated engine. Defaults: a 7B VLM on one H100-class GPU, in milliseconds (decode memory-bound)."""

    max_running: int = 32
    decode_ms: float = 8.0  # one step at batch 1: the weights read once
    decode_ms_per_seq: float = 0.12  # what each further running sequence adds to a step
    prefill_ms_per_token: float = 0.02
    max_batched_tokens: int = 8192  # prompt tokens admitted per step (chunked-prefill budget)
    box_words_median: float = 16.0  # words a grounding turn writes before its box
    answer_words_median: float = 96.0  # an answering turn's reasoning
    sigma: float = 1.0  # lognormal tail
    max_tokens_cap: int = 2048
    time_scale: float = 1.0  # >1 slows everything down (a loaded CPU client keeps up more easily)
    seed: int = 0

    def step_ms(self, running: int) -> float:
        return self.decode_ms + self.decode_ms_per_seq * running


@dataclass
class Job:
    prompt_tokens: int
    charged_tokens: int  # prompt tokens not in the prefix cache
    out_tokens: int
    text: str
    key: str
    arrived: float
    produced: int = 0
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Stats:
    requests: int = 0
    prompt_tokens: int = 0
    charged_tokens: int = 0
    output_tokens: int = 0
    steps: int = 0
    engine_s: float = 0.0  # simulated time spent in steps
    running_token_s: float = 0.0  # sum of running * step time: for the mean batch
    max_running: int = 0
    max_waiting: int = 0
    idle_s: float = 0.0  # wall time with nothing to run, between the first arrival and the last completion
    full_s: float = 0.0  # simulated time with every running slot taken
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (t, running, waiting) once a second
    first_arrival: float | None = None
    last_done: float | None = None


class Simulator:
    """The engine loop: one thread, steps of real (scaled) time."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.cond = threading.Condition()
        self.waiting: deque[Job] = deque()
        self.running: list[Job] = []
        self.stats = Stats()
        self.cache: dict[str, int] = {}  # conversation -> tokens it holds (prompt + output of its last turn)
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="sim-engine")
        self.thread.start()

    def reset(self) -> None:
        with self.cond:
            self.stats = Stats()
            self.cache.clear()

    def submit(self, body: dict[str, Any]) -> Job:
        job = self._job(body)
        with self.cond:
            s = self.stats
            s.requests += 1
            s.prompt_tokens += job.prompt_tokens
            s.charged_tokens += job.charged_tokens
            s.first_arrival = job.arrived if s.first_arrival is None else s.first_arrival
            self.waiting.append(job)
            s.max_waiting = max(s.max_waiting, len(self.waiting))
            self.cond.notify_all()
        job.done.wait()
        return job

    def report(self) -> dict[str, Any]:
        cfg = self.cfg
        with self.cond:
            s = asdict(self.stats)
        per_token_full = cfg.step_ms(cfg.max_running) / cfg.max_running
        bound_ms = s["charged_tokens"] * cfg.prefill_ms_per_token + s["output_tokens"] * per_token_full
        s["bound_s"] = bound_ms * cfg.time_scale / 1000
        span = (s["last_done"] - s["first_arrival"]) if s["first_arrival"] and s["last_done"] else 0.0
        s["busy_s"] = max(0.0, span - s["idle_s"])  # real time with work to do: running or waiting sequences
        s["mean_running"] = s["running_token_s"] / s["engine_s"] if s["engine_s"] else 0.0
        s["config"] = asdict(cfg)
        return s

    # -----------------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        cfg = self.cfg
        next_t = time.perf_counter()
        while True:
            with self.cond:
                idle_from = time.perf_counter()
                while not self.waiting and not self.running and not self.stop:
                    self.cond.wait()
                if self.stop:
                    return
                if self.stats.first_arrival is not None and self.stats.steps:
                    self.stats.idle_s += time.perf_counter() - idle_from
                prefill = 0
                while self.waiting and len(self.running) < cfg.max_running:
                    job = self.waiting[0]
                    if prefill and prefill + job.charged_tokens > cfg.max_batched_tokens:
                        break
                    self.waiting.popleft()
                    prefill += job.charged_tokens
                    self.running.append(job)
                running = len(self.running)
            ms = cfg.step_ms(running) + prefill * cfg.prefill_ms_per_token
            seconds = ms * cfg.time_scale / 1000
            now = time.perf_counter()
            next_t = max(next_t, now - 0.05) + seconds  # catch up small delays; never bank idle time
            if next_t > now:
                time.sleep(next_t - now)
            with self.cond:
                s = self.stats
                s.steps += 1
                s.engine_s += seconds
                s.running_token_s += running * seconds
                s.max_running = max(s.max_running, running)
                if running >= cfg.max_running:
                    s.full_s += seconds
                t = time.perf_counter() - (s.first_arrival or 0)
                if not s.timeline or t - s.timeline[-1][0] >= 1.0:
                    s.timeline.append((round(t, 2), running, len(self.waiting)))
                finished = []
                for job in self.running:
                    job.produced += 1
                    if job.produced >= job.out_tokens:
                        finished.append(job)
                for job in finished:
                    self.running.remove(job)
                    s.output_tokens += job.out_tokens
                    s.last_done = time.perf_counter()
                    # what the next turn's prompt shares with this one: the prompt, and this answer as it will be
                    # counted there (counting the answer's decoded tokens instead over-credits the cache)
                    self.cache[job.key] = job.prompt_tokens + message_tokens({"role": "assistant", "content": job.text})
            for job in finished:
                job.done.set()

    def _job(self, body: dict[str, Any]) -> Job:
        cfg = self.cfg
        messages = body["messages"]
        prompt = sum(message_tokens(m) for m in messages)
        users = [m for m in messages if m["role"] == "user"]
        first, last = _text(users[0]) if users else "", _text(users[-1]) if users else ""
        tag = SAMPLE_TAG.search(first)
        key = tag.group(1) if tag else hashlib.sha1(json.dumps(messages[:2])[:65536].encode()).hexdigest()
        turn = sum(m["role"] == "assistant" for m in messages)
        with self.cond:
            cached = self.cache.get(key, 0) if turn else 0
        charged = max(1, prompt - cached)
        rng = random.Random(f"{cfg.seed}:{key}:{turn}")
        answering = "\\boxed{}" in last
        median = cfg.answer_words_median if answering else cfg.box_words_median
        words = max(1, min(cfg.max_tokens_cap, int(rng.lognormvariate(math.log(median), cfg.sigma))))
        filler = " ".join("so" for _ in range(words))
        if answering:
            text, out = f"{filler} \\boxed{{{'ABCD'[rng.randrange(4)]}}}", words + 6
        else:
            w, h = last_image_size(messages)
            bw, bh = max(PATCH, w // 3), max(PATCH, h // 3)
            x1, y1 = rng.randrange(max(1, w - bw)), rng.randrange(max(1, h - bh))
            box = [x1, y1, x1 + bw, y1 + bh]
            text = f'{filler}\n```json\n[{{"bbox_2d": {json.dumps(box)}, "label": "target"}}]\n```'
            out = words + 24
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if limit:
            out = min(out, int(limit))
        return Job(prompt, charged, out, text, key, time.perf_counter())


def message_tokens(message: dict[str, Any]) -> int:
    """A chat message's prompt tokens: visual tokens per image, ~4 characters a text token, 4 for the framing."""
    content = message.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    visual, chars = 0, 0
    for p in parts:
        if p.get("type") == "text":
            chars += len(p["text"])
        elif p.get("type") == "image_url":
            visual += visual_tokens(p["image_url"]["url"])
    return visual + chars // 4 + 4


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def image_size(url: str) -> tuple[int, int]:
    """An image's size from its data URL: the PNG header alone when it is a PNG, else a full decode."""
    data = url.split(",", 1)[1]
    head = base64.b64decode(data[:64])
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
        return img.size


def smart_resize(w: int, h: int, min_pixels: int = QWEN_MIN_PIXELS, max_pixels: int = QWEN_MAX_PIXELS) -> tuple:
    """Qwen2.5-VL's frame: sides rounded to 28, pixels within limits (as qwen_vl_utils)."""
    hb, wb = max(PATCH, round(h / PATCH) * PATCH), max(PATCH, round(w / PATCH) * PATCH)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / PATCH) * PATCH, math.floor(w / beta / PATCH) * PATCH
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / PATCH) * PATCH, math.ceil(w * beta / PATCH) * PATCH
    return wb, hb


def visual_tokens(url: str) -> int:
    w, h = smart_resize(*image_size(url))
    return (w // PATCH) * (h // PATCH)


def last_image_size(messages: list[dict[str, Any]]) -> tuple[int, int]:
    for m in reversed(messages):
        content = m.get("content")
        for p in reversed(content if isinstance(content, list) else []):
            if p.get("type") == "image_url":
                return smart_resize(*image_size(p["image_url"]["url"]))
    return 1000, 1000


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default listen backlog (5) drops a burst of connects: 1-3 s SYN retries


def serve(cfg: SimConfig, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, Simulator]:
    """Start the server in a background thread; (server, simulator)."""
    sim = Simulator(cfg)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections, as against a real server

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, payload: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/stats"):
                return self._send(sim.report())
            self._send({"object": "list", "data": [{"id": "sim-qwen2.5-vl", "object": "model"}]})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.rstrip("/").endswith("/reset"):
                sim.reset()
                return self._send({"ok": True})
            job = sim.submit(json.loads(body))
            self._send({
                "id": "sim", "object": "chat.completion", "created": int(time.time()), "model": "sim-qwen2.5-vl",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": job.text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.out_tokens,
                          "total_tokens": job.prompt_tokens + job.out_tokens},
            })  # fmt: skip

    server = _Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="sim-http").start()
    return server, sim


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    for f in SimConfig.__dataclass_fields__.values():
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    args = ap.parse_args(argv)
    cfg = SimConfig(**{k: getattr(args, k) for k in SimConfig.__dataclass_fields__})
    server, _ = serve(cfg, args.host, args.port)
    print(f"listening on http://{args.host}:{server.server_address[1]}/v1", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
