"""Pillow's process-wide guards survive mgpo's threaded image loading."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageFile

from mgpo import imaging
from mgpo.errors import ImageError


def test_threaded_loads_leave_pillows_guards_as_they_were(tmp_path):
    paths = []
    for i in range(8):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (600 + i, 400), (i * 20, 0, 0)).save(path)
        paths.append(path)
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    assert before[0] is not None  # the guard is on to begin with
    for _ in range(5):
        with ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(lambda p: imaging.load_image(p).size, paths * 4))
        assert len(sizes) == 32
        assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_guards_are_restored_after_a_failed_load(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError):
        imaging.load_image(bad)
    assert before == Image.MAX_IMAGE_PIXELS
