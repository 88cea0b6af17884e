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
