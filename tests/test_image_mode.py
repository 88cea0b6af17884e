"""Image opening: the paper preset opens files as the reference does; 'upright' is the friendlier named option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from mgpo import imaging
from mgpo.backends.scripted import ScriptedBackend
from mgpo.engine import Engine
from mgpo.protocol import ProtocolConfig
from mgpo.types import Sample


@pytest.fixture
def rotated_jpeg(tmp_path: Path) -> Path:
    """A 300x200 JPEG whose EXIF says 'rotate 90°' (orientation 6)."""
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[imaging.EXIF_ORIENTATION] = 6
    Image.new("RGB", (300, 200), (10, 200, 30)).save(path, exif=exif.tobytes())
    return path


@pytest.fixture
def transparent_png(tmp_path: Path) -> Path:
    path = tmp_path / "alpha.png"
    arr = np.zeros((64, 96, 4), dtype=np.uint8)
    arr[..., 0], arr[..., 3] = 200, 0  # red, fully transparent
    arr[:, :48, 3] = 128
    Image.fromarray(arr, "RGBA").save(path)
    return path


def test_reference_mode_is_image_open_convert_rgb(rotated_jpeg: Path, transparent_png: Path) -> None:
    for path in (rotated_jpeg, transparent_png):
        with Image.open(path) as im:
            expected = np.asarray(im.convert("RGB"))
        got = imaging.load_image(path, mode="reference")
        assert np.array_equal(np.asarray(got), expected), path
    assert imaging.load_image(rotated_jpeg, mode="reference").size == (300, 200)  # no EXIF rotation
    assert imaging.load_image(transparent_png, mode="reference").getpixel((80, 10)) == (200, 0, 0)  # alpha dropped


def test_upright_mode_rotates_and_composites_on_white(rotated_jpeg: Path, transparent_png: Path) -> None:
    with Image.open(rotated_jpeg) as im:
        assert imaging.load_image(rotated_jpeg, mode="upright").size == ImageOps.exif_transpose(im).size == (200, 300)
    assert imaging.load_image(transparent_png, mode="upright").getpixel((80, 10)) == (255, 255, 255)


def test_paper_preset_uses_reference_mode_and_records_it(rotated_jpeg: Path) -> None:
    assert ProtocolConfig.paper().image_mode == "reference"
    with pytest.raises(ValueError, match="image_mode"):
        ProtocolConfig.paper(image_mode="exif")
    for mode, size in (("reference", [300, 200]), ("upright", [200, 300])):
        cfg = ProtocolConfig.paper(image_mode=mode, min_pixels=3136, max_pixels=50176)
        engine = Engine(ScriptedBackend([{"turns": ["no box", "\\boxed{A}"]}]), cfg)
        traj = engine.run_one(Sample(str(rotated_jpeg), "q?", ["a", "b"], "A"))
        assert traj.error is None and traj.turns[0].image_size == size
        assert traj.protocol["image_mode"] == mode and traj.protocol["scoring"] == "paper"
