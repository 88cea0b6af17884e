"""Every model family through the transformers backend, on its tiny offline model: `mgpo infer` end to end, and a
two-image turn 2 (the full view and a crop) whose M-RoPE positions, vision cache and left-padded batch are right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mgpo import families
from mgpo.backends.base import Request
from mgpo.backends.hf import HFBackend, render_inputs
from mgpo.cli import app
from mgpo.episode import Episode
from mgpo.protocol import ProtocolConfig


@pytest.mark.parametrize("name", families.NAMES)
def test_infer_runs_on_every_family(name: str, family_model_dirs: dict, tmp_path: Path) -> None:
    image = tmp_path / "big.png"
    Image.effect_noise((1600, 1200), 40).convert("RGB").save(image)
    model = family_model_dirs[name]
    result = CliRunner().invoke(app, ["infer", str(image), "What is it?", "-c", "a", "-c", "b", "--model",
                                      str(model), "--json", "--max-new-tokens", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    traj = json.loads(result.stdout)
    unit = families.get_family(name).frame_unit
    assert traj["model_family"] == name and traj["protocol"]["frame_unit"] == unit
    assert traj["protocol"]["coords"] == families.get_family(name).coords
    from mgpo.backends.hf import load_processor

    processor = load_processor(str(model), 3136, 12_845_056)
    view = Image.open(image).resize((1158, 868))  # the paper's pre-resize of 1600x1200 (1003520 px)
    grid = processor.image_processor(images=[view], return_tensors="pt")["image_grid_thw"][0].tolist()
    patch = processor.image_processor.patch_size
    for turn in traj["turns"]:
        assert turn["frame_size"][0] % unit == 0 and turn["frame_size"][1] % unit == 0
        assert turn["frame_size"] == [grid[2] * patch, grid[1] * patch]


def _two_turns(cfg: ProtocolConfig) -> tuple[list, list]:
    """Turn 1's messages, and turn 2's after a box in the family's convention: the full view, then the crop."""
    original = Image.effect_noise((2400, 1800), 60).convert("RGB")
    ep = Episode(original, "What is written on the sign?", ["cat", "dog"], cfg)
    first = list(ep.messages)
    box = [250, 250, 500, 500] if cfg.box_coords == "normalized-1000" else [290, 217, 580, 434]
    step = ep.step(f'```json\n[{{"bbox_2d": {box}, "label": "sign"}}]\n```')
    assert step is not None and step.cropped
    return first, ep.messages


@pytest.mark.parametrize("name", families.NAMES)
def test_two_image_turn_positions_cache_and_batch(name: str, family_model_dirs: dict) -> None:
    model = str(family_model_dirs[name])
    cfg = families.for_model(ProtocolConfig.paper(), model)
    first, second = _two_turns(cfg)
    cached = HFBackend(model, device="cpu")
    plain = HFBackend(model, device="cpu", vision_cache_mb=0)

    # M-RoPE: the processor marks the image tokens (mm_token_type_ids) and each image's tokens get a 2-D grid of
    # positions of its merged size, with the text after it resuming past the image's span
    inputs = render_inputs(plain.processor, [second])
    assert "mm_token_type_ids" in inputs
    grids = inputs["image_grid_thw"].tolist()
    assert len(grids) == 2
    positions, _ = plain.model.model.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )  # fmt: skip
    is_image = inputs["mm_token_type_ids"][0] == 1
    merge = plain.processor.image_processor.merge_size
    runs, start = [], None
    for i, flag in enumerate([*is_image.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    assert len(runs) == 2
    for (lo, hi), (_t, gh, gw) in zip(runs, grids, strict=True):
        h, w = positions[1, 0, lo:hi], positions[2, 0, lo:hi]
        assert int(h.max() - h.min()) + 1 == gh // merge and int(w.max() - w.min()) + 1 == gw // merge
        assert int(positions[0, 0, hi]) == int(positions[:, 0, lo:hi].max()) + 1  # text resumes past the image

    requests = [Request(first, 0, 0, max_new_tokens=6), Request(second, 1, 1, max_new_tokens=6)]
    cached.generate(requests[:1])
    hits = cached.stats["vision_hits"]
    with_cache = cached.generate(requests[1:])[0]
    assert cached.stats["vision_hits"] - hits == 1  # turn 1's full view, shown again, is not re-encoded
    without = plain.generate(requests[1:])[0]
    assert with_cache.error is None and (with_cache.text, with_cache.output_tokens) == (
        without.text,
        without.output_tokens,
    )
    batched = plain.generate(requests)  # left-padded together: positions must not depend on the padding
    alone = [plain.generate([r])[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in alone]
    with torch.inference_mode():  # and the logits of the cached turn 2 are the uncached ones
        a = _logits(cached, second)
        b = _logits(plain, second)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def _logits(backend: HFBackend, messages: list) -> torch.Tensor:
    cache = backend.vision_cache
    cache.skipping = True  # render as the backend's own batch does (cached images skipped)
    try:
        inputs = render_inputs(backend.processor, [messages])
    finally:
        cache.skipping = False
    backend._batch_images = [p["image"] for m in messages for p in m["content"] if p["type"] == "image"]
    try:
        return backend.model(**inputs).logits[0, -1]
    finally:
        backend._batch_images = None
        cache.pinned.clear()
