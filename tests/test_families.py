"""Model families (mgpo.families): resolution from a checkpoint, and each family's frame and visual-token count
against what its real processor produces (image_grid_thw) on 1,000 random image sizes per family."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mgpo import families, imaging
from mgpo.errors import MgpoError
from mgpo.protocol import PAPER_PIXELS, PROCESSOR_PIXELS, ProtocolConfig

EXPECTED = {  # family: (frame unit, coordinate convention), as the released checkpoints have them
    "qwen2_vl": (28, "normalized-1000"),
    "qwen2_5_vl": (28, "resized-pixels"),
    "qwen3_vl": (32, "normalized-1000"),
    "qwen3_5": (32, "normalized-1000"),
}


def _shown_sizes(n: int, seed: int) -> list[tuple[int, int]]:
    """Sizes of images the model is shown: full views (the pre-resize of random originals, down, up or neither)
    and crop views (random crops brought into the crop limits, never under 28 px a side)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        if rng.random() < 0.7:
            w, h = rng.randint(28, 9000), rng.randint(28, 9000)
            if max(w, h) / min(w, h) > 20:
                continue
            out.append(imaging.pre_resize_size((w, h), *PAPER_PIXELS))
        else:
            w, h = rng.randint(29, 3000), rng.randint(29, 3000)
            if max(w, h) / min(w, h) > 100:
                continue
            out.append(imaging.fit_side_limits(imaging.pre_resize_size((w, h), *PAPER_PIXELS)))
    return out


@pytest.mark.parametrize("name", families.NAMES)
def test_frames_and_visual_tokens_equal_the_real_processors_grid(name: str, family_model_dirs: dict) -> None:
    import torch

    from mgpo.backends.hf import load_processor

    model_dir = family_model_dirs[name]
    cfg = families.for_model(ProtocolConfig.paper(), str(model_dir))
    assert (cfg.model_family, cfg.unit, cfg.box_coords) == (name, *EXPECTED[name])
    processor = load_processor(str(model_dir), cfg.processor_min_pixels, cfg.processor_max_pixels)
    ip = processor.image_processor
    assert cfg.unit == ip.patch_size * ip.merge_size  # read from the checkpoint's processor config
    sizes = _shown_sizes(1000, seed=13)
    tokens_api = processor._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes])["num_image_tokens"]
    for (w, h), api_tokens in zip(sizes, tokens_api, strict=True):
        frame = imaging.model_frame((w, h), cfg.processor_min_pixels, cfg.processor_max_pixels, cfg.unit)
        pixels = torch.zeros((3, h, w), dtype=torch.uint8)  # only the size matters to the grid
        grid = ip(images=[pixels], return_tensors="pt", do_rescale=False, do_normalize=False)["image_grid_thw"][0]
        t, gh, gw = grid.tolist()
        assert frame == (gw * ip.patch_size, gh * ip.patch_size), (name, w, h)
        assert frame[0] % cfg.unit == 0 and frame[1] % cfg.unit == 0
        assert imaging.visual_tokens(frame, cfg.unit) == t * gh * gw // ip.merge_size**2 == api_tokens, (name, w, h)


def test_frames_match_qwen_vl_utils_with_the_family_unit() -> None:
    from qwen_vl_utils import smart_resize

    for size in _shown_sizes(300, seed=5):
        h, w = smart_resize(size[1], size[0], factor=32, min_pixels=PROCESSOR_PIXELS[0], max_pixels=PROCESSOR_PIXELS[1])
        assert imaging.model_frame(size, *PROCESSOR_PIXELS, 32) == (w, h)


def test_resolution_order(tmp_path: Path) -> None:
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "qwen3_vl_moe"}))
    assert families.resolve(str(model))[0].name == "qwen3_vl"  # an MoE checkpoint is its dense family's
    assert families.resolve(str(model), "qwen2_5_vl")[0].name == "qwen2_5_vl"  # --model-family wins
    assert families.resolve(str(model), "auto")[0].name == "qwen3_vl"
    (model / "preprocessor_config.json").write_text(json.dumps({"patch_size": 14, "merge_size": 2}))
    assert families.resolve(str(model))[1] == 28  # the unit is the processor's, not the table's
    # no config to read: the model's name, then the default
    assert families.resolve("Qwen/Qwen3-VL-8B-Instruct")[0].name == "qwen3_vl"
    assert families.resolve("Qwen/Qwen3.5-9B")[0].name == "qwen3_5"
    assert families.resolve("Qwen/Qwen2-VL-7B-Instruct")[0].name == "qwen2_vl"
    assert families.resolve("Qwen/Qwen2.5-VL-7B-Instruct") == (families.get_family("qwen2_5_vl"), 28)
    assert families.resolve("my-org/some-model") == (families.get_family("qwen2_5_vl"), 28)


def test_coords_follow_the_family_unless_given() -> None:
    family = families.get_family("qwen3_vl")
    assert families.apply(ProtocolConfig.paper(), family).coords == "normalized-1000"
    given = ProtocolConfig.paper(coords="resized-pixels")
    assert families.apply(given, family).coords == "resized-pixels"
    assert families.settle(ProtocolConfig.paper()).to_dict()["coords"] == "resized-pixels"  # unchanged default


def test_an_unknown_family_is_one_line() -> None:
    with pytest.raises(MgpoError, match="unknown model family 'llava'; use one of: auto, qwen2_vl") as err:
        ProtocolConfig.paper(model_family="llava")
    assert "\n" not in str(err.value)


def test_processor_pixel_keys() -> None:
    assert families.get_family("qwen3_vl").processor_kwargs(1, 2) == {"size": {"shortest_edge": 1, "longest_edge": 2}}
    assert families.get_family("qwen2_5_vl").processor_kwargs(1, 2) == {"min_pixels": 1, "max_pixels": 2}
