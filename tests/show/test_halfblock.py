"""Half-block pictures: cell geometry, outlines in cell pixels, and the colour codes a console receives."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from rich.console import Console

from mgpo.view.halfblock import (
    UPPER_HALF,
    HalfBlocks,
    Outline,
    box_in_cells,
    cell_pixels,
    draw_outlines,
    fit_cells,
    halfblocks,
    pixel_lines,
)

RED, BLUE, WHITE = (230, 25, 75), (0, 130, 200), (255, 255, 255)


def _render(renderable, color_system: str) -> str:
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=color_system)
    console.print(renderable)
    return console.file.getvalue()


def test_each_cell_is_upper_pixel_on_lower_pixel():
    image = Image.new("RGB", (2, 4), WHITE)
    image.putpixel((0, 0), RED)  # row 0, left cell: red over white
    image.putpixel((1, 3), BLUE)  # row 1, right cell: white over blue
    lines = pixel_lines(image)
    assert len(lines) == 2
    (first, second), (third, fourth) = lines
    assert first.text == UPPER_HALF and first.style.color.triplet == RED and first.style.bgcolor.triplet == WHITE
    assert second.style.color.triplet == WHITE and second.style.bgcolor.triplet == WHITE
    assert third.style.color.triplet == WHITE and third.style.bgcolor.triplet == WHITE
    assert fourth.style.color.triplet == WHITE and fourth.style.bgcolor.triplet == BLUE


def test_runs_of_equal_cells_are_one_segment():
    (line,) = pixel_lines(Image.new("RGB", (30, 2), RED))
    assert len(line) == 1 and line[0].text == UPPER_HALF * 30


def test_truecolor_and_256_colour_output():
    true = _render(HalfBlocks(Image.new("RGB", (4, 2), RED)), "truecolor")
    assert "\x1b[38;2;230;25;75;48;2;230;25;75m" + UPPER_HALF * 4 in true
    # a fresh picture: rich caches a Style's escape codes on first render, whatever the console
    fallback = _render(HalfBlocks(Image.new("RGB", (4, 2), RED)), "256")
    assert "38;5;" in fallback and "48;5;" in fallback and "38;2;" not in fallback
    assert UPPER_HALF * 4 in fallback


def test_picture_never_wraps_and_has_its_exact_size():
    picture = halfblocks(Image.new("RGB", (400, 300), WHITE), 40, 50)
    assert (picture.cols, picture.rows) == (40, 15)  # 40 x 30 pixels: the 4:3 aspect kept
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system="truecolor")
    lines = console.render_lines(picture, console.options.update(width=80), pad=False)
    assert len(lines) == 15 and all(sum(len(s.text) for s in line) == 40 for line in lines)


def test_outline_lands_on_the_box_in_cell_pixels():
    # 100x100 source -> 10x10 cell pixels (10 cols x 5 rows): the box [50, 20, 100, 60] covers x 5..9, y 2..5
    pixels = cell_pixels(Image.new("RGB", (100, 100), WHITE), 10, 5)
    draw_outlines(pixels, (100, 100), [Outline([50, 20, 100, 60], RED)])
    red = {(x, y) for x in range(10) for y in range(10) if pixels.getpixel((x, y)) == RED}
    expected = {(x, y) for x in range(5, 10) for y in (2, 5)} | {(x, y) for y in range(2, 6) for x in (5, 9)}
    assert red == expected


def test_dotted_outline_is_every_other_pixel_of_the_same_rectangle():
    pixels = cell_pixels(Image.new("RGB", (100, 100), WHITE), 10, 5)
    draw_outlines(pixels, (100, 100), [Outline([0, 0, 100, 100], RED, dotted=True)])
    red = {(x, y) for x in range(10) for y in range(10) if pixels.getpixel((x, y)) == RED}
    border = {(x, y) for x in range(10) for y in range(10) if x in (0, 9) or y in (0, 9)}
    assert red <= border and len(red) == len(border) // 2


@given(w=st.integers(1, 20000), h=st.integers(1, 20000), cols=st.integers(1, 300), rows=st.integers(1, 120))
def test_fit_cells_stays_within_limits_and_keeps_the_aspect(w, h, cols, rows):
    c, r = fit_cells((w, h), cols, rows)
    assert 1 <= c <= cols and 1 <= r <= rows
    if c > 4 and r > 4:  # rounding aside, the picture's pixels have the image's aspect ratio
        assert abs(c / (2 * r) - w / h) <= (w / h) * (1 / c + 1 / r)


@given(
    box=st.lists(st.floats(-500, 5000, allow_nan=False), min_size=4, max_size=4),
    w=st.integers(1, 200),
    h=st.integers(1, 200),
    sx=st.floats(0.001, 2),
    sy=st.floats(0.001, 2),
)
def test_box_in_cells_is_never_empty_and_never_outside(box, w, h, sx, sy):
    x1, y1, x2, y2 = box_in_cells(box, sx, sy, (w, h))
    assert 0 <= x1 <= x2 < w and 0 <= y1 <= y2 < h


def test_dotted_outline_goes_around_a_small_box_leaving_it_visible():
    pixels = cell_pixels(Image.new("RGB", (100, 100), WHITE), 10, 5)
    draw_outlines(pixels, (100, 100), [Outline([40, 40, 60, 60], RED, dotted=True)])
    red = {(x, y) for x in range(10) for y in range(10) if pixels.getpixel((x, y)) == RED}
    assert red and all(x in (3, 6) or y in (3, 6) for x, y in red)  # the box covers cells 4..5
