"""Fixtures for the training tests: small VQA sets written on the fly, a small-pixel protocol, scripted turns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
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


@pytest.fixture
def vqa_dir(tmp_path: Path) -> Path:
    """A generic-schema JSONL set (4 rows, answer always B) with its PNGs, image paths relative to the file."""
    folder = tmp_path / "vqa"
    folder.mkdir()
    rows = [
        {"image_path": name, "question": "What colour is the square?", "choices": ["red", "blue", "green"],
         "answer": "B", "id": f"s{i}"}
        for i, name in enumerate(write_images(folder, 4))
    ]  # fmt: skip
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


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


@pytest.fixture
def make_trainer(tiny_model_dir: Path, tmp_path: Path):
    """Build an MGPOTrainer on the tiny model through mgpo.train.run's own config path."""

    def make(data: Path, algo: str = "mgpo", n: int = 4, **trl: Any):
        from mgpo.backends.hf import load_processor
        from mgpo.train.config import make_config
        from mgpo.train.data import load_training_data
        from mgpo.train.rewards import reward_functions
        from mgpo.train.run import build_args, turn_cap
        from mgpo.train.trainer import MGPOTrainer

        settings = {"num_generations": n, "per_device_train_batch_size": n, "max_steps": 1, "save_strategy": "no",
                    "learning_rate": 0.1, "max_completion_length": 1200, **trl}  # fmt: skip
        cfg = make_config(
            algo=algo, data=str(data), model=str(tiny_model_dir), output_dir=str(tmp_path / "out"),
            turn_max_new_tokens=40, protocol=dict(SMALL), trl=settings,
        )  # fmt: skip
        proto = cfg.protocol_config()
        processor = load_processor(cfg.model, proto.processor_min_pixels, proto.processor_max_pixels)
        return MGPOTrainer(
            model=cfg.model, reward_funcs=reward_functions(cfg.rewards), args=build_args(cfg, processor),
            train_dataset=load_training_data(cfg.data), processing_class=processor, protocol_config=proto,
            turn_max_new_tokens=turn_cap(cfg),
        )  # fmt: skip

    return make
