"""A synthetic high-resolution benchmark in V* Bench's schema, for offline tests, demos and CI.

Each image is 2000-4000 px a side with small targets sized so that, once the full image is pre-resized to the
paper's pixel budget, a target spans about ``MODEL_SPAN`` pixels (too few to read its colour, glyph or shape), while
a crop around it, upscaled to the crop budget, shows it dozens of pixels wide. Questions follow V*: attribute
questions (colour, letter or digit, shape; 4 options) and relative-position questions (left/right; 2 options), with
ground-truth boxes in original pixels, written as V* writes them (``bbox``: a list of [x, y, w, h]). The correct
option's letter is drawn per item from the seed, so an "always A" model scores chance; ``correct_first`` keeps V*'s
own convention (the correct option is (A)).
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mgpo.errors import MgpoError
from mgpo.protocol import PAPER_PIXELS
from mgpo.synthetic import COLOURS, background, draw_shape

SHAPES = ("circle", "triangle", "square")
GLYPHS = string.ascii_uppercase.replace("I", "").replace("O", "") + "23456789"  # no I/1, O/0 look-alikes
MODEL_SPAN = 8  # target side in pixels at the full image's model resolution
DATA_FILE = "test.parquet"


@dataclass
class SynthItem:
    """One V*-schema row: the image file, the question with its options, the label and the target boxes."""

    question_id: str
    image: str  # path relative to the dataset directory
    text: str  # V* style: the question, then '(A) ... (B) ...'
    question: str
    options: list[str]
    label: str
    category: str  # direct_attributes | relative_position
    attribute: str  # colour | glyph | shape | position
    bbox: list[list[int]] = field(default_factory=list)  # V*'s [x, y, w, h], original pixels
    width: int = 0
    height: int = 0


def target_side(size: tuple[int, int], max_pixels: int = PAPER_PIXELS[1]) -> int:
    """Side in original pixels of a target that spans MODEL_SPAN pixels after the full image's pre-resize."""
    scale = min(1.0, math.sqrt(max_pixels / (size[0] * size[1])))
    return max(12, round(MODEL_SPAN / scale))


def _free_spot(rng: random.Random, size: tuple[int, int], side: int, taken: list[list[int]]) -> list[int]:
    w, h = size
    margin = 4 * side
    for _ in range(200):
        x, y = rng.randint(margin, w - margin - side), rng.randint(margin, h - margin - side)
        box = [x, y, x + side, y + side]
        if all(box[2] + 2 * side < t[0] or t[2] + 2 * side < box[0] or box[3] + 2 * side < t[1] or t[3] + 2 * side
               < box[1] for t in taken):  # fmt: skip
            return box
    raise RuntimeError("no free spot for a target")  # not reachable at these sizes


def _options(correct: str, pool: list[str], n: int, rng: random.Random) -> list[str]:
    others = rng.sample([p for p in pool if p != correct], n - 1)
    return [correct, *others]  # correct first, as V* lists them; make_item places it afterwards


def _draw_glyph(draw: ImageDraw.ImageDraw, box: list[int], glyph: str) -> None:
    draw.rectangle(box, fill=(250, 250, 250), outline=(0, 0, 0), width=max(1, (box[2] - box[0]) // 16))
    side = box[2] - box[0]
    font = ImageFont.load_default(size=max(8, int(side * 0.8)))
    draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), glyph, fill=(0, 0, 0), font=font, anchor="mm")


def make_item(index: int, seed: int, correct_first: bool = False) -> tuple[Image.Image, SynthItem]:
    """Draw one image and its question; deterministic in (index, seed)."""
    rng = random.Random(f"mgpo-synth-{seed}-{index}")
    size = (rng.randint(2000, 4000), rng.randint(2000, 4000))
    image = background(size, rng)
    draw = ImageDraw.Draw(image)
    side = target_side(size)
    colours = list(COLOURS)
    taken: list[list[int]] = []
    qid = f"synth_{seed}_{index:05d}"
    kind = ("colour", "glyph", "shape", "position")[index % 4]

    if kind == "position":
        (shape_a, shape_b), (col_a, col_b) = rng.sample(SHAPES, 2), rng.sample(colours, 2)
        box_a = _free_spot(rng, size, side, taken)
        taken.append(box_a)
        while True:
            box_b = _free_spot(rng, size, side, taken)
            if abs(box_b[0] - box_a[0]) > 4 * side:
                break
        draw_shape(draw, shape_a, box_a, COLOURS[col_a])
        draw_shape(draw, shape_b, box_b, COLOURS[col_b])
        answer = "left" if box_a[0] < box_b[0] else "right"
        question = f"Is the {col_a} {shape_a} on the left or right side of the {col_b} {shape_b}?"
        options = [answer, "right" if answer == "left" else "left"]
        boxes, category = [box_a, box_b], "relative_position"
    else:
        box = _free_spot(rng, size, side, taken)
        taken.append(box)
        if kind == "colour":
            shape, colour = rng.choice(SHAPES), rng.choice(colours)
            draw_shape(draw, shape, box, COLOURS[colour])
            question, options = f"What is the colour of the {shape}?", _options(colour, colours, 4, rng)
            decoys = [(s, rng.choice(colours)) for s in SHAPES if s != shape]  # other kinds: no ambiguity
        elif kind == "glyph":
            glyph = rng.choice(GLYPHS)
            _draw_glyph(draw, box, glyph)
            question = "Which letter or digit is written on the white sign?"
            options = _options(glyph, list(GLYPHS), 4, rng)
            decoys = [(rng.choice(SHAPES), rng.choice([c for c in colours if c != "white"])) for _ in range(2)]
        else:
            shape, colour = rng.choice(SHAPES), rng.choice(colours)
            draw_shape(draw, shape, box, COLOURS[colour])
            question = f"What is the shape of the {colour} object?"
            options = _options(shape, [*SHAPES, "star"], 4, rng)
            decoys = [(rng.choice(SHAPES), c) for c in rng.sample([c for c in colours if c != colour], 2)]
        for decoy_shape, decoy_colour in decoys:
            decoy = _free_spot(rng, size, side, taken)
            taken.append(decoy)
            draw_shape(draw, decoy_shape, decoy, COLOURS[decoy_colour])
        boxes, category = [box], "direct_attributes"

    k = 0  # correct_first: V*'s own convention
    if not correct_first:  # the correct option's place from its own stream: the image is the same either way
        k = random.Random(f"mgpo-synth-letter-{seed}-{index}").randrange(len(options))
        options.insert(k, options.pop(0))
    label = string.ascii_uppercase[k]
    text = question + " " + " ".join(f"({string.ascii_uppercase[i]}) {o}" for i, o in enumerate(options))
    xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b in boxes]
    item = SynthItem(qid, f"images/{qid}.jpg", text, question, options, label, category, kind, xywh, *size)
    return image, item


def write_synth(out_dir: str | Path, n: int = 20, seed: int = 0, correct_first: bool = False) -> Path:
    """Write n items: out_dir/images/*.jpg, out_dir/test.parquet (V* schema); return the parquet path."""
    import pandas as pd

    if n < 1:
        raise MgpoError(f"--n must be at least 1, got {n}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image, item = make_item(i, seed, correct_first)
        image.save(out / item.image, quality=95)  # JPEG like V*; q95 keeps small glyphs legible
        rows.append(asdict(item))
    path = out / DATA_FILE
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path
