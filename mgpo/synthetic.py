"""Synthetic high-resolution scenes: a large textured canvas with small targets whose attribute is unreadable at
the model's full-image resolution but clear in a crop. Used by the demo, the synthetic benchmark and tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 70, 220), "yellow": (240, 210, 20),
    "purple": (140, 40, 170), "orange": (250, 130, 20), "black": (20, 20, 20), "white": (250, 250, 250),
}  # fmt: skip


@dataclass
class Target:
    """A drawn object: its kind, colour name and box in image pixels."""

    kind: str
    colour: str
    box: list[int]


def background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A busy, low-contrast background so that small targets are not trivially visible."""
    w, h = size
    small = Image.new("RGB", (max(8, w // 64), max(8, h // 64)))
    small.putdata([tuple(rng.randint(90, 170) for _ in range(3)) for _ in range(small.width * small.height)])
    image = small.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.randrange(w), rng.randrange(h)
        r = rng.randint(w // 80, w // 20)
        shade = tuple(rng.randint(100, 160) for _ in range(3))
        draw.ellipse([x - r, y - r, x + r, y + r], outline=shade, width=max(2, r // 10))
    return image


def draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: list[int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if kind == "circle":
        draw.ellipse(box, fill=colour, outline=(0, 0, 0), width=2)
    elif kind == "triangle":
        draw.polygon([((x1 + x2) // 2, y1), (x2, y2), (x1, y2)], fill=colour, outline=(0, 0, 0))
    elif kind == "cup":  # a mug: body and handle
        bw = (x2 - x1) * 3 // 4
        draw.rectangle([x1, y1, x1 + bw, y2], fill=colour, outline=(0, 0, 0), width=2)
        draw.ellipse([x1 + bw - 4, y1 + (y2 - y1) // 4, x2, y2 - (y2 - y1) // 4], outline=colour, width=5)
    else:
        draw.rectangle(box, fill=colour, outline=(0, 0, 0), width=2)


def demo_scene(seed: int = 0, size: tuple[int, int] = (3200, 2400)) -> tuple[Image.Image, Target]:
    """One high-res image with a small red cup: the demo's default input."""
    rng = random.Random(seed)
    image = background(size, rng)
    side = max(40, min(size) // 40)
    x, y = rng.randint(size[0] // 2, size[0] - 3 * side), rng.randint(size[1] // 2, size[1] - 3 * side)
    box = [x, y, x + side, y + side]
    draw_shape(ImageDraw.Draw(image), "cup", box, COLOURS["red"])
    return image, Target("cup", "red", box)
