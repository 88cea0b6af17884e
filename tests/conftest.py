"""Shared fixtures: a tiny Qwen2.5-VL built offline once per session, and image/sample factories."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
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


# ---------------------------------------------------------------------------------------------------------------
# Every class of image a user may give: the ones that must be refused in one line, the ones that must work


def _png_bytes(size: tuple[int, int] = (300, 200), colour: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(size: tuple[int, int] = (40_000, 40_000)) -> bytes:
    """A 1 kB PNG whose header claims 1.6 billion pixels (a decompression bomb): the guard must refuse it unread."""
    header = struct.pack(">IIBBBBB", *size, 8, 2, 0, 0, 0)  # 8-bit RGB
    data = zlib.compress(b"\0" * 1024)  # a few rows; the guard looks at the header only
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _png_rgb16(size: tuple[int, int] = (160, 120)) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one): red, at 65535."""
    w, h = size
    row = b"\0" + struct.pack(">HHH", 65535, 0, 0) * w
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(row * h))
            + _png_chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment the error line must contain): every class of image mgpo must refuse in one line.
    All but ``missing.png`` and ``folder`` are real files, so their bytes serve as embedded images too."""
    files: dict[str, tuple[Path, str]] = {}
    folder = tmp_path / "bad"
    folder.mkdir()

    def put(name: str, data: bytes, expect: str) -> None:
        path = folder / name
        path.write_bytes(data)
        files[name] = (path, expect)

    put("empty.png", b"", "empty")
    put("notes.png", b"this is a text file, not an image\n" * 20, "not an image")
    put("corrupt.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "")
    put("truncated.png", _png_bytes((600, 400))[:300], "")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    put("truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "truncated")
    put("tiny.png", _png_bytes((20, 16)), "at least 28 px")
    put("thin.png", _png_bytes((6000, 28)), "aspect ratio")
    put("ratio201.png", _png_bytes((6030, 30)), "aspect ratio 201:1 exceeds 200:1")
    put("bomb.png", _png_bomb(), "exceeds the limit of 300,000,000")
    files["missing.png"] = (folder / "missing.png", "no such file")
    files["folder"] = (folder, "directory")
    return files


@pytest.fixture
def good_files(tmp_path: Path) -> dict[str, Path]:
    """name -> file: the modes and formats that must load (as RGB), each 160x120 once upright."""
    folder = tmp_path / "good"
    folder.mkdir()
    size = (160, 120)
    red = Image.new("RGB", size, (255, 0, 0))
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **kw) -> None:
        image.save(folder / name, **kw)
        files[name] = folder / name

    save("cmyk.jpg", Image.new("CMYK", size, (0, 255, 255, 0)))
    save("cmyk.tiff", Image.new("CMYK", size, (0, 255, 255, 0)))
    save("rgba.png", Image.new("RGBA", size, (255, 0, 0, 128)))
    save("la.png", Image.new("LA", size, (76, 255)))
    save("p.png", red.convert("P"))
    palette = Image.new("P", size, 0)
    palette.putpalette([255, 0, 0] * 256)
    save("p_transparent.png", palette, transparency=0)
    save("i16.png", Image.fromarray(np.full(size[::-1], 40_000, dtype=np.uint16)))
    (folder / "rgb16.png").write_bytes(_png_rgb16(size))
    files["rgb16.png"] = folder / "rgb16.png"
    frames = [Image.new("RGB", size, c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    save("frames.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    save("frames.tiff", frames[0], save_all=True, append_images=frames[1:])
    rotated = Image.new("RGB", size[::-1], (255, 0, 0))  # stored 120x160, shown 160x120 (rotate 90 CW to display)
    exif = rotated.getexif()
    exif[0x0112] = 6
    save("exif_rotated.jpg", rotated, exif=exif)
    return files
