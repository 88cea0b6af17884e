"""Shared fixtures: a tiny Qwen2.5-VL built offline once per session, and image/sample factories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched from the Hub in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL written to disk (model, processor, chat template)."""
    from mgpo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_dir: Path):
    from mgpo.backends.hf import load_processor

    return load_processor(str(tiny_model_dir), 3136, 12_845_056)


@pytest.fixture
def big_image() -> Image.Image:
    """A 4000x3000 image: the spec's worked example size."""
    return Image.new("RGB", (4000, 3000), (200, 180, 160))


@pytest.fixture
def image_file(tmp_path: Path):
    """Write an image of the given size/mode to a PNG and return its path."""

    def make(size: tuple[int, int] = (800, 600), mode: str = "RGB", name: str = "img.png", fmt: str = "PNG") -> Path:
        path = tmp_path / name
        Image.new(mode, size).save(path, fmt)
        return path

    return make


@pytest.fixture(scope="session")
def family_model_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """A tiny random model of every family (mgpo.families), written once per session; qwen2_5_vl is the shared one."""
    from mgpo.families import NAMES
    from mgpo.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("families")
    dirs = {name: build_tiny_model(root / name, family=name) for name in NAMES if name != "qwen2_5_vl"}
    return {"qwen2_5_vl": tiny_model_dir, **dirs}
