"""hf backend speed features on the tiny model: the vision-encoder cache between turns must change nothing but time."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mgpo import protocol
from mgpo.backends.base import Request
from mgpo.backends.hf import HFBackend, VisionCache
from mgpo.engine import Engine
from mgpo.protocol import ProtocolConfig
from mgpo.types import Sample


@pytest.fixture(scope="module")
def backends(tiny_model_dir: Path) -> tuple[HFBackend, HFBackend]:
    cached = HFBackend(str(tiny_model_dir), device="cpu", batch_size=4)
    plain = HFBackend(str(tiny_model_dir), device="cpu", batch_size=4, vision_cache_mb=0)
    return cached, plain


def two_turn_requests(n: int) -> tuple[list[Request], list[Request]]:
    cfg = ProtocolConfig.paper()
    first, second = [], []
    for i in range(n):
        full = Image.effect_noise((560 + 28 * i, 420), 60 + i).convert("RGB")
        crop = Image.effect_noise((224, 168 + 28 * i), 30 + i).convert("RGB")
        msgs = protocol.first_turn_messages(cfg, full, f"Question {i}?", ["a", "b"])
        first.append(Request(msgs, i, 0, max_new_tokens=6))
        msgs2 = [*msgs, protocol.assistant_message("box"),
                 protocol.followup_message(crop, f"Question {i}?", ["a", "b"], cropped=True, final=True)]  # fmt: skip
        second.append(Request(msgs2, i, 1, max_new_tokens=6))
    return first, second


def test_vision_cache_reuses_turn_one_image_with_identical_outputs(backends) -> None:
    cached, plain = backends
    first, second = two_turn_requests(3)
    before = dict(cached.stats)
    out1 = cached.generate(first)
    assert cached.stats["vision_misses"] - before["vision_misses"] == 3
    out2 = cached.generate(second)
    assert cached.stats["vision_hits"] - before["vision_hits"] == 3  # each full image, encoded once in turn 1
    assert cached.stats["vision_misses"] - before["vision_misses"] == 6  # + the three crops
    assert cached.stats["processor_skips"] - before["processor_skips"] == 3  # nor processed again
    ref1, ref2 = plain.generate(first), plain.generate(second)
    assert plain.stats["vision_hits"] == 0
    assert [g.text for g in out1] == [g.text for g in ref1]
    assert [g.text for g in out2] == [g.text for g in ref2]
    assert all(g.error is None for g in out1 + out2)


def test_engine_two_turn_run_hits_the_cache(backends) -> None:
    cached, _ = backends
    samples = [Sample(Image.effect_noise((900, 700), 50).convert("RGB"), "Where?", ["x", "y"], "A") for _ in range(2)]
    hits = cached.stats["vision_hits"]
    trajs = Engine(cached, ProtocolConfig.paper(max_new_tokens=4)).run(samples)
    assert all(t.error is None and len(t.turns) == 2 for t in trajs)
    # the random model writes no box, so turn 2 shows the full image again: both of its images come from the cache
    assert cached.stats["vision_hits"] - hits == 4


def test_processor_outside_generation_gives_real_pixels(backends, tiny_processor) -> None:
    """The skip is for the backend's own batches only: other users of its processor (training) get real pixels."""
    from mgpo.backends.hf import render_inputs

    cached, _ = backends
    first, _ = two_turn_requests(1)
    cached.generate(first)  # the image's encoder output is now cached
    assert cached.vision_cache.get(first[0].messages[-1]["content"][0]["image"]) is not None
    got = render_inputs(cached.processor, [first[0].messages])["pixel_values"]
    want = render_inputs(tiny_processor, [first[0].messages])["pixel_values"]
    assert got.abs().sum() > 0 and bool((got == want).all())


def test_vision_cache_drops_dead_images_and_respects_budget() -> None:
    import gc

    import torch

    cache = VisionCache(budget_bytes=3 * 400, stats={})
    images = [Image.new("RGB", (28, 28)) for _ in range(4)]
    for image in images:
        cache.put(image, torch.zeros(100))  # 400 bytes each
    del image
    assert len(cache) == 3 and cache.used == 1200
    oldest_evicted = cache.get(images[0]) is None
    newest_kept = cache.get(images[3]) is not None
    assert oldest_evicted and newest_kept
    images.pop()  # the last reference to the newest image
    gc.collect()
    assert len(cache) == 2 and cache.used == 800
