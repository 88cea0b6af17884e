"""A loopback OpenAI-compatible server (ThreadingHTTPServer on 127.0.0.1, port 0) with deterministic answers that
sees every request: which sample (the first image's bytes), which turn (assistant messages so far), how many were
in flight. A ``hold`` hook decides when each request may answer, so tests prove scheduling by ordering and events on
the server, never by wall-clock assertions.

Answers: turn 1 names a box inside the image it was shown (at its model frame, as Qwen2.5-VL would), derived from
the sample's bytes; later turns answer ``\\boxed{X}`` with a letter derived the same way. The same conversation
always gets the same text, so two schedules of one run can be compared row by row.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


@dataclass
class Call:
    """One chat completion as the server saw it."""

    sample: str  # a digest of the conversation's first image: the same for every turn of one sample
    turn: int  # 0-based: assistant messages before this request
    in_flight: int  # requests at the server when this one arrived (itself included)
    frame: tuple[int, int]  # size of the last image sent
    seed: int | None = None  # the request's sampling seed, echoed in the answer so a mixed-up seed shows


@dataclass
class Loopback:
    """State shared by the handler threads; ``url`` once started."""

    hold: Callable[[Loopback, Call], None] | None = None  # runs in the handler thread before it answers
    calls: list[Call] = field(default_factory=list)
    released_in_flight: list[int] = field(default_factory=list)  # in flight at the moment each request was answered
    in_flight: int = 0
    max_in_flight: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def answer(self, call: Call) -> str:
        digest = int(call.sample[:8], 16)
        if call.turn == 0:
            w, h = call.frame
            x1, y1 = digest % max(1, w // 2), (digest >> 8) % max(1, h // 2)
            box = [x1, y1, min(w, x1 + max(28, w // 3)), min(h, y1 + max(28, h // 3))]
            return '```json\n[{"bbox_2d": ' + json.dumps(box) + ', "label": "target"}]\n```'
        return f"It is clear now (seed {call.seed}). \\boxed{{{'ABCD'[digest % 4]}}}"


def _call(body: dict[str, Any], in_flight: int) -> Call:
    urls = [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p.get("type") == "image_url"]  # fmt: skip
    turn = sum(m["role"] == "assistant" for m in body["messages"])
    raw = base64.b64decode(urls[-1].split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as img:
        frame = img.size
    sample = hashlib.sha1(urls[0].encode()).hexdigest()
    return Call(sample, turn, in_flight, frame, body.get("seed"))


@contextmanager
def loopback_server(hold: Callable[[Loopback, Call], None] | None = None) -> Iterator[Loopback]:
    """Serve until the block ends; yields the state with ``url`` set to the /v1 base URL."""
    state = Loopback(hold=hold)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send({"object": "list", "data": [{"id": "loopback", "object": "model"}]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.cond:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                call = _call(body, state.in_flight)
                state.calls.append(call)
                state.cond.notify_all()
            try:
                if state.hold:
                    state.hold(state, call)
                text = state.answer(call)
            finally:
                with state.cond:
                    state.released_in_flight.append(state.in_flight)
                    state.in_flight -= 1
                    state.cond.notify_all()
            self._send({
                "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100 + 50 * call.turn, "completion_tokens": len(text.split())},
            })  # fmt: skip

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        with state.cond:  # wake any held handler so shutdown never waits on it
            state.hold = None
            state.cond.notify_all()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def fifo_gate(width: int, quiet: float) -> Callable[[Loopback, Call], None]:
    """Answer requests oldest first, one at a time, and only while ``width`` are at the server, or after ``quiet``
    seconds without a new arrival (the end of a run, or a client that cannot fill ``width``). A client that keeps
    ``width`` requests out is answered at full width; one that waits on a turn barrier is answered only by the
    quiet timer, with fewer in flight: ``released_in_flight`` tells them apart."""
    queue: list[int] = []
    arrivals = [0]

    def hold(state: Loopback, call: Call) -> None:
        me = id(call)
        with state.cond:
            queue.append(me)
            arrivals[0] += 1
            while state.hold is not None:
                seen = arrivals[0]
                if queue[0] == me and len(queue) >= width:
                    break
                if not state.cond.wait(timeout=quiet) and queue[0] == me and arrivals[0] == seen:
                    break  # quiet: nothing new arrived while this request headed the queue
            queue.remove(me)
            state.cond.notify_all()

    return hold
