"""Fixtures for the training tests: small VQA sets written on the fly, a trainer on the tiny model. Plain helpers
live in train_helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from train_helpers import SMALL, write_images


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
