"""vllm backend: vLLM cannot be installed here (no CUDA), so this checks the clear error and the pure parts that decide
what vLLM is given — prompts, images at their frames, engine arguments — with the tiny model's real processor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from mgpo import imaging, protocol
from mgpo.backends import make_backend
from mgpo.backends.frames import to_model_frame
from mgpo.backends.vllm import MISSING, llm_kwargs, render_prompt
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig


def test_missing_vllm_is_one_clear_error(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # as on a machine without vLLM, even if one is installed
    with pytest.raises(MgpoError) as info:
        make_backend("vllm", str(tiny_model_dir))
    assert str(info.value) == "vLLM is not installed; pip install 'mgpo[vllm]' on a CUDA machine" == MISSING


def test_engine_arguments_enable_prefix_caching_images_and_pixel_limits() -> None:
    cfg = ProtocolConfig.paper()
    kw = llm_kwargs("Qwen/Qwen2.5-VL-7B-Instruct", max_images=cfg.max_turns, min_pixels=cfg.processor_min_pixels,
                    max_pixels=cfg.processor_max_pixels, extra={"enforce_eager": True})  # fmt: skip
    assert kw["enable_prefix_caching"] is True
    assert kw["limit_mm_per_prompt"] == {"image": 2}
    assert kw["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 12_845_056}
    assert kw["enforce_eager"] is True and "max_model_len" not in kw


def test_turn_two_prompt_extends_turn_one_and_carries_both_images_at_their_frames(tiny_processor) -> None:
    cfg = ProtocolConfig.paper()
    full = Image.new("RGB", (1157, 867), (1, 2, 3))
    crop = Image.new("RGB", (450, 449), (4, 5, 6))
    turn1 = protocol.first_turn_messages(cfg, full, "What is it?", ["a", "b"])
    turn2 = [*turn1, protocol.assistant_message('```json\n[{"bbox_2d": [1, 2, 30, 40]}]\n```'),
             protocol.followup_message(crop, "What is it?", ["a", "b"], cropped=True, final=True)]  # fmt: skip

    def frame(img):
        return to_model_frame(img, cfg.processor_min_pixels, cfg.processor_max_pixels)

    p1, p2 = render_prompt(tiny_processor, turn1, frame), render_prompt(tiny_processor, turn2, frame)
    pad = "<|vision_start|><|image_pad|><|vision_end|>"
    assert p1["prompt"].count(pad) == 1 and p2["prompt"].count(pad) == 2
    # prefix caching needs turn 2's prompt to start with turn 1's (minus the open assistant header)
    header = "<|im_start|>assistant\n"
    assert p1["prompt"].endswith(header) and p2["prompt"].startswith(p1["prompt"])
    images = p2["multi_modal_data"]["image"]
    for img, src in zip(images, (full, crop), strict=True):
        lo, hi = cfg.processor_min_pixels, cfg.processor_max_pixels
        assert img.size == imaging.model_frame(src.size, lo, hi) == imaging.model_frame(img.size, lo, hi)
    assert isinstance(p1["multi_modal_data"]["image"], Image.Image)


# ---------------------------------------------------------------------------------------------------------------
# --async-engine, against a stand-in for vllm's documented API (vllm cannot be installed here): AsyncLLMEngine's
# async generate(prompt, sampling_params, request_id), LLM.generate(prompts, params) for the turn-by-turn control.

N_SAMPLES, WIDTH = 12, 4


def _answer(prompt: dict) -> str:
    """What the stand-in model writes: a box on the first turn (one image in the prompt), then an answer."""
    size = prompt["multi_modal_data"]["image"]
    size = (size[-1] if isinstance(size, list) else size).size
    if prompt["prompt"].count("<|image_pad|>") == 1:
        w, h = size
        return f'```json\n[{{"bbox_2d": [0, 0, {w // 2}, {h // 2}], "label": "x"}}]\n```'
    return "\\boxed{A}" if size[0] % 2 else "\\boxed{B}"


def _output(prompt: dict):
    from types import SimpleNamespace

    text = _answer(prompt)
    completion = SimpleNamespace(text=text, token_ids=list(range(len(text) // 4 + 1)), finish_reason="stop")
    return SimpleNamespace(outputs=[completion], prompt_token_ids=[0] * 100, finished=True)


def fake_vllm(log: dict):
    """A module with vllm's names; its async engine holds each request until WIDTH are in flight (or, at the end,
    one per sample not yet answered), so the in-flight count it sees is what the client sustains, with no clock."""
    import asyncio
    import types

    mod = types.ModuleType("vllm")
    mod.SamplingParams = lambda **kw: dict(kw)
    mod.AsyncEngineArgs = lambda **kw: dict(kw)

    class LLM:
        def __init__(self, **kw):
            log["llm"] = kw

        def generate(self, prompts, params, use_tqdm=False):
            return [_output(p) for p in prompts]

    class AsyncLLMEngine:
        def __init__(self, args):
            log["async_args"] = args
            self.cond = asyncio.Condition()
            self.in_flight = self.answered = 0  # answered: samples whose last turn (two images) has returned

        @classmethod
        def from_engine_args(cls, args):
            asyncio.get_running_loop()  # built on the loop that runs it, as vLLM's output handler needs
            return cls(args)

        def _full(self) -> bool:
            return self.in_flight >= min(WIDTH, N_SAMPLES - self.answered)

        async def generate(self, prompt, params, request_id):
            assert request_id not in log["ids"]
            log["ids"].add(request_id)
            async with self.cond:
                self.in_flight += 1
                log["max"] = max(log["max"], self.in_flight)
                self.cond.notify_all()
                try:
                    await asyncio.wait_for(self.cond.wait_for(self._full), timeout=60)
                except TimeoutError:  # a client that cannot fill the engine: the test fails, it does not hang
                    log["timeouts"] += 1
                log["seen"].append((self.in_flight, min(WIDTH, N_SAMPLES - self.answered)))
                self.in_flight -= 1
                self.answered += prompt["prompt"].count("<|image_pad|>") == 2
                self.cond.notify_all()
            yield _output(prompt)

        def shutdown(self):
            log["shutdown"] = True

    mod.LLM, mod.AsyncLLMEngine = LLM, AsyncLLMEngine
    return mod


def test_async_engine_pipelines_per_sample_with_the_same_trajectories(tiny_model_dir: Path, monkeypatch) -> None:
    from mgpo.engine import Engine
    from mgpo.types import Sample

    log: dict = {"ids": set(), "max": 0, "seen": [], "timeouts": 0}
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(log))
    cfg = ProtocolConfig.paper(min_pixels=3136, max_pixels=50176, crop_min_pixels=3136, crop_max_pixels=50176)
    samples = [Sample(Image.new("RGB", (300 + 7 * i, 200 + 5 * i), (i, 2 * i, 3 * i)), "What is it?", ["a", "b"],
                      "A", id=f"s{i}") for i in range(N_SAMPLES)]  # fmt: skip
    piped_backend = make_backend("vllm", str(tiny_model_dir), protocol=cfg, async_engine=True, concurrency=WIDTH)
    sync_backend = make_backend("vllm", str(tiny_model_dir), protocol=cfg)
    piped_engine, sync_engine = Engine(piped_backend, cfg), Engine(sync_backend, cfg)
    assert piped_engine.pipelines and not sync_engine.pipelines
    piped, sync = piped_engine.run(samples), sync_engine.run(samples)
    piped_backend.close()

    def comparable(t):
        d = t.to_dict()
        for turn in d["turns"]:
            turn.pop("seconds")
        return d

    assert [comparable(t) for t in piped] == [comparable(t) for t in sync]
    assert all(len(t.turns) == 2 and t.turns[0].box_original and t.error is None for t in piped)  # crops ran
    assert len(log["ids"]) == 2 * N_SAMPLES  # one request per turn, each with its own id
    # the client kept WIDTH requests in the engine, and at the end one per sample left: all it could
    assert log["timeouts"] == 0 and log["max"] == WIDTH
    assert all(in_flight == possible for in_flight, possible in log["seen"])
    assert log["async_args"]["enable_prefix_caching"] is True and log["shutdown"] is True
    assert "llm" in log  # the control ran vllm.LLM, turn by turn
