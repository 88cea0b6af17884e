"""bench/learn.py's task is what its figures assume: the answer is the colour inside the frame, the warm start's
letters are not, the RL rows alternate A/B (balanced steps), and the stretch's patch is too small in the full view."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import learn

from mgpo import imaging


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _frame_colour(folder: Path, row: dict, task: learn.Task) -> str:
    x1, y1, x2, y2 = task.frame
    pixel = Image.open(folder / row["image_path"]).getpixel(((x1 + x2) // 2, (y1 + y2) // 2))
    return min(learn.COLOURS, key=lambda c: sum(abs(a - b) for a, b in zip(learn.COLOURS[c], pixel, strict=True)))


def test_the_answer_is_the_frame_colour_and_balanced_rows_alternate(tmp_path: Path) -> None:
    path = learn.write_task(tmp_path, 24, seed=3, balanced=True)
    rows = _rows(path)
    assert [r["answer"] for r in rows] == ["A", "B"] * (len(rows) // 2) and len(rows) >= 8
    for row in rows:
        assert learn.CHOICES["AB".index(row["answer"])] == _frame_colour(tmp_path, row, learn.MAIN)
        assert row["gt_box"] == list(learn.MAIN.frame)


def test_the_warm_start_letters_do_not_follow_the_image(tmp_path: Path) -> None:
    rows = _rows(learn.write_task(tmp_path, 64, seed=0, answers="random"))
    agree = sum(learn.CHOICES["AB".index(r["answer"])] == _frame_colour(tmp_path, r, learn.MAIN) for r in rows)
    assert 16 < agree < 48  # chance, not the colour


def test_the_fine_task_patch_is_under_one_visual_token_in_the_full_view_and_several_in_the_crop() -> None:
    p = learn.PROTOCOL
    size = learn.FINE.size
    view = imaging.pre_resize_size((size, size), p["min_pixels"], p["max_pixels"])
    in_view = learn.FINE.patch * view[0] / size
    side = learn.FINE.frame[2] - learn.FINE.frame[0]
    crop = imaging.pre_resize_size((side, side), p["crop_min_pixels"], p["crop_max_pixels"])
    in_crop = learn.FINE.patch * crop[0] / side
    assert in_view < 28 <= in_crop / 2  # a merged visual token covers 28 x 28 model pixels
