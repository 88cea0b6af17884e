"""The synthetic V*-schema benchmark: schema, sizes, boxes, determinism, and small-target readability."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image

from mgpo import imaging
from mgpo.eval.synth import MODEL_SPAN, make_item, target_side
from mgpo.protocol import ProtocolConfig


def test_written_dataset_schema(synth_dir: Path) -> None:
    frame = pd.read_parquet(synth_dir / "test.parquet")
    assert len(frame) == 20
    assert {"question_id", "image", "text", "label", "category", "bbox"} <= set(frame.columns)
    assert set(frame.category) == {"direct_attributes", "relative_position"}
    assert set(frame.attribute) == {"colour", "glyph", "shape", "position"}
    for row in frame.itertuples():
        with Image.open(synth_dir / row.image) as im:
            w, h = im.size
        assert 2000 <= w <= 4000 and 2000 <= h <= 4000
        assert (row.width, row.height) == (w, h)
        assert len(row.options) == (2 if row.category == "relative_position" else 4)
        for x, y, bw, bh in row.bbox:  # V*'s [x, y, w, h]
            assert 0 <= x < x + bw <= w and 0 <= y < y + bh <= h


def test_letters_are_balanced_unless_correct_first() -> None:
    items = [make_item(i, seed=3)[1] for i in range(40)]
    counts = {letter: sum(it.label == letter for it in items) for letter in "ABCD"}
    assert counts["A"] < 20 and all(counts[x] > 0 for x in "ABCD")  # an "always A" model no longer scores 100%
    for it in items:  # the label points at the right option: the same option V*'s convention puts first
        first = make_item(int(it.question_id[-5:]), seed=3, correct_first=True)[1]
        assert first.label == "A" and it.options["ABCD".index(it.label)] == first.options[0]
        assert sorted(it.options) == sorted(first.options) and it.bbox == first.bbox


def test_deterministic_in_seed() -> None:
    a, b, c = make_item(5, seed=1)[1], make_item(5, seed=1)[1], make_item(5, seed=2)[1]
    assert a == b
    assert a != c


def test_target_unreadable_at_model_resolution_readable_in_crop() -> None:
    cfg = ProtocolConfig.paper()
    for index in range(4):  # one of each kind
        image, item = make_item(index, seed=0)
        x1, y1, w, h = item.bbox[0]
        x2, y2 = x1 + w, y1 + h
        full = imaging.pre_resize_size(image.size, cfg.min_pixels, cfg.max_pixels)
        span_full = (x2 - x1) * full[0] / image.size[0]
        assert span_full <= MODEL_SPAN + 1  # a few pixels: colour, glyph and shape are not legible
        side = x2 - x1
        crop = [max(0, x1 - 2 * side), max(0, y1 - 2 * side), x2 + 2 * side, y2 + 2 * side]
        shown = imaging.resize_crop(imaging.crop(image, crop), cfg.crop_min_pixels, cfg.crop_max_pixels)
        span_crop = side * shown.size[0] / (crop[2] - crop[0])
        assert span_crop >= 60  # the same target fills a good part of the enlarged crop
    assert target_side((4000, 4000)) > target_side((2000, 2000))
