"""bench/simserver.py does what the serving benchmark's figures assume: a running cap, prefix caching across a
conversation's turns, seeded lengths per sample, a box then a boxed answer, and busy/idle accounting."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import simserver


def png_url(size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 120, 120)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def user(text: str, size: tuple[int, int]) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url(size)}},
                                        {"type": "text", "text": text}]}  # fmt: skip


def post(url: str, messages: list[dict]) -> dict:
    return httpx.post(f"{url}/chat/completions", json={"model": "m", "messages": messages}, timeout=60).json()


def test_two_turns_pay_only_for_the_new_part_and_write_a_box_then_an_answer() -> None:
    server, sim = simserver.serve(simserver.SimConfig(time_scale=0.05, seed=1))
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        first = [user("Where is the cup? [item 7]", (560, 420))]
        one = post(url, first)
        text = one["choices"][0]["message"]["content"]
        assert '"bbox_2d"' in text
        box = [int(v) for v in text.split("[", 2)[2].split("]")[0].split(",")]
        assert 0 <= box[0] < box[2] <= 560 and 0 <= box[1] < box[3] <= 420  # inside the frame it was shown
        turn2 = [*first, {"role": "assistant", "content": text}, user("Answer with \\boxed{}.", (280, 224))]
        two = post(url, turn2)
        assert "\\boxed{" in two["choices"][0]["message"]["content"]
        stats = sim.report()
        visual1, visual2 = (560 // 28) * (420 // 28), (280 // 28) * (224 // 28)
        assert one["usage"]["prompt_tokens"] >= visual1
        assert two["usage"]["prompt_tokens"] >= visual1 + visual2
        # prefix caching: turn 2 is charged its new tokens (the crop, the new text), not the whole conversation
        charged2 = stats["charged_tokens"] - one["usage"]["prompt_tokens"]
        assert visual2 <= charged2 < visual2 + 100
        assert stats["requests"] == 2 and stats["output_tokens"] == (
            one["usage"]["completion_tokens"] + two["usage"]["completion_tokens"]
        )
        # the same sample's lengths are the same in another run (seeded by sample and turn)
        httpx.post(f"{url}/reset", timeout=10)
        assert post(url, first)["usage"]["completion_tokens"] == one["usage"]["completion_tokens"]
    finally:
        server.shutdown()


def test_at_most_max_running_sequences_run_and_the_rest_wait() -> None:
    sim = simserver.Simulator(simserver.SimConfig(max_running=4, time_scale=0.05, seed=2))
    jobs = [sim._job({"messages": [user(f"Where? [item {i}]", (280, 280))]}) for i in range(12)]
    with sim.cond:  # all twelve wait before the engine's next step: it may admit four
        sim.waiting.extend(jobs)
        sim.cond.notify_all()
    for job in jobs:
        assert job.done.wait(timeout=60)
    stats = sim.report()
    assert stats["max_running"] == 4
    assert stats["output_tokens"] == sum(j.out_tokens for j in jobs)
    # a full batch never exceeds the cap, so the 12 jobs take at least 3 jobs' worth of steps in sequence
    assert stats["steps"] >= 3 * min(j.out_tokens for j in jobs)
    sim.stop = True
