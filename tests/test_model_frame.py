"""The model frame (spec §3) against external references: qwen-vl-utils' smart_resize, and the real Qwen2.5-VL image
processor's image_grid_thw, on random sizes that exercise both steps (pre-resize down, pre-resize up, rounding only)."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from mgpo import imaging
from mgpo.protocol import PAPER_PIXELS, PROCESSOR_PIXELS


def _sizes(n: int, seed: int) -> list[tuple[int, int]]:
    """Originals above max_pixels (downscaled first), below min_pixels (upscaled first), and in between."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.4:
            w, h = rng.randint(1000, 9000), rng.randint(1000, 9000)
        elif kind < 0.7:
            w, h = rng.randint(28, 440), rng.randint(28, 440)
        else:
            w, h = rng.randint(400, 1400), rng.randint(400, 1400)
        if max(w, h) / min(w, h) <= 20:
            out.append((w, h))
    return out


def _mgpo_frame(size: tuple[int, int]) -> tuple[int, int]:
    return imaging.model_frame(imaging.pre_resize_size(size, *PAPER_PIXELS), *PROCESSOR_PIXELS)


def test_frame_matches_qwen_vl_utils_smart_resize_on_1500_sizes() -> None:
    from qwen_vl_utils import smart_resize

    steps = {"down": 0, "up": 0, "none": 0}
    for size in _sizes(1500, seed=7):
        pre = imaging.pre_resize_size(size, *PAPER_PIXELS)
        steps["down" if pre[0] < size[0] else "up" if pre[0] > size[0] else "none"] += 1
        h, w = smart_resize(pre[1], pre[0], factor=28, min_pixels=PROCESSOR_PIXELS[0], max_pixels=PROCESSOR_PIXELS[1])
        assert _mgpo_frame(size) == (w, h), size
    assert min(steps.values()) > 100  # all three cases really exercised


@pytest.fixture(scope="module")
def image_processor():
    from transformers import Qwen2VLImageProcessor

    # Qwen2.5-VL-7B-Instruct's preprocessor_config: min_pixels 3136, max_pixels 12845056, patch 14, merge 2
    return Qwen2VLImageProcessor(size={"shortest_edge": PROCESSOR_PIXELS[0], "longest_edge": PROCESSOR_PIXELS[1]})


def test_frame_matches_the_real_image_processors_grid(image_processor) -> None:
    for size in _sizes(60, seed=8):
        shown = Image.new("RGB", imaging.pre_resize_size(size, *PAPER_PIXELS))  # what the model is given
        _t, gh, gw = image_processor(images=[shown], return_tensors="np")["image_grid_thw"][0].tolist()
        assert _mgpo_frame(size) == (gw * 14, gh * 14), size
        assert imaging.visual_tokens(_mgpo_frame(size)) == gh * gw // 4
