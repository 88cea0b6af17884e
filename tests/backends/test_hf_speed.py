"""hf backend speed features on the tiny model: the vision-encoder cache between turns must change nothing but time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
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


def record_logits(backend: HFBackend) -> list:
    """Make the backend's generate also keep every step's logits (the tokens it returns are unchanged)."""
    kept: list = []
    generate = backend.model.generate

    def generate_keeping_logits(**kwargs):
        out = generate(**kwargs, output_logits=True, return_dict_in_generate=True)
        kept.append(torch.stack(out.logits, dim=1))  # (batch, steps, vocab)
        return out.sequences

    backend.model.generate = generate_keeping_logits
    return kept


def test_vision_cache_reuses_turn_one_image_with_identical_outputs(backends, tiny_processor) -> None:
    """Cached and uncached runs agree on the image features and on every logit, not just on a few greedy tokens
    of a random model (which would agree for many wrong features too)."""
    cached, plain = backends
    first, second = two_turn_requests(3)
    before = dict(cached.stats)
    cached_logits, plain_logits = record_logits(cached), record_logits(plain)
    try:
        out1 = cached.generate(first)
        assert cached.stats["vision_misses"] - before["vision_misses"] == 3
        out2 = cached.generate(second)
        ref1, ref2 = plain.generate(first), plain.generate(second)
    finally:
        del cached.model.generate, plain.model.generate  # back to the model's own method
    assert cached.stats["vision_hits"] - before["vision_hits"] == 3  # each full image, encoded once in turn 1
    assert cached.stats["vision_misses"] - before["vision_misses"] == 6  # + the three crops
    assert cached.stats["processor_skips"] - before["processor_skips"] == 3  # nor processed again
    assert plain.stats["vision_hits"] == 0
    assert all(g.error is None for g in out1 + out2)
    assert [g.text for g in out1 + out2] == [g.text for g in ref1 + ref2]
    for got, want in zip(cached_logits, plain_logits, strict=True):  # turn 1, then turn 2 (crop + cached image)
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    # the cached features of turn 1's image are the encoder's own output for that image
    image = first[0].messages[-1]["content"][0]["image"]
    features, grid = cached.vision_cache.get(image)
    pixels = tiny_processor.image_processor(images=[image], return_tensors="pt")
    with torch.inference_mode():
        direct = plain.model.base_model.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"])
    assert torch.equal(grid, pixels["image_grid_thw"][0])
    assert torch.allclose(features, direct.pooler_output[0], atol=1e-5, rtol=1e-4)


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
