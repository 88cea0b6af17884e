"""Helpers shared by the training tests (a real module, so `pytest tests/train tests/eval` imports them without
two conftest modules competing for one name): the small-pixel protocol, a box turn, image sets, scripted turns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# small pixel limits keep every image at 16..64 visual tokens: fast on CPU, same code path as the paper's limits
SMALL = {"min_pixels": 28 * 28 * 16, "max_pixels": 28 * 28 * 64, "crop_min_pixels": 28 * 28 * 16,
         "crop_max_pixels": 28 * 28 * 64}  # fmt: skip
BOX_TURN = 'Looking.\n```json\n[{"bbox_2d": [20, 30, 150, 120], "label": "cube"}]\n```'


def write_images(folder: Path, n: int, size: tuple[int, int] = (900, 700)) -> list[str]:
    names = []
    for i in range(n):
        img = Image.new("RGB", size, (30 + 40 * i, 120, 200 - 30 * i))
        ImageDraw.Draw(img).rectangle([100 + 10 * i, 150, 400, 380], fill=(250, 20, 20))
        name = f"img_{i}.png"
        img.save(folder / name)
        names.append(name)
    return names


def script(trainer: Any, turn1: list[str], turn2: list[str]) -> list[list[list[int]]]:
    """Replace sampling with scripted texts (tokenised + end-of-turn), so the trainer's own rollout code runs on them.

    Returns the list that records every prompt the sampler was given, per call."""
    tok = trainer._tokenizer
    seen: list[list[list[int]]] = []

    def fake(prompt_ids, images, fields, num_generations, has_tool_images=False):
        seen.append([list(p) for p in prompt_ids])
        texts = turn2 if has_tool_images else turn1
        ids = [tok(texts[i % len(texts)], add_special_tokens=False)["input_ids"] + [trainer.end_of_turn_id]
               for i in range(len(prompt_ids))]  # fmt: skip
        return ids, None

    trainer._generate_single_turn = fake
    return seen
