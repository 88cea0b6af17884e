"""Pictures in a terminal: a PIL image as colour half-block characters, boxes outlined on it.

Each character cell shows two pixels stacked: "▀" in the upper pixel's colour on the lower pixel's background. A
cell is about twice as tall as it is wide, so these pixels are square and the picture keeps its aspect ratio. Colours
are written as 24-bit; rich brings them down to 256 (or 16) colours when the console cannot do truecolor. Pure
functions and one small renderable; nothing here knows about trajectories.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

UPPER_HALF = "▀"
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Outline:
    """A box to draw, in the source image's pixels, with its colour; dotted for the ground truth."""

    box: Sequence[float]
    colour: RGB
    dotted: bool = False


def fit_cells(size: tuple[int, int], max_cols: int, max_rows: int) -> tuple[int, int]:
    """(cols, rows) of the largest half-block picture of an image of ``size`` within the limits, aspect kept."""
    w, h = size
    scale = min(max_cols / w, 2 * max_rows / h)
    cols = max(1, min(max_cols, round(w * scale)))
    rows = max(1, min(max_rows, round(h * scale / 2)))
    return cols, rows


def cell_pixels(image: Image.Image, cols: int, rows: int) -> Image.Image:
    """The image resampled to one pixel per half cell: cols x (2 * rows), RGB."""
    size = (cols, 2 * rows)
    shrinking = image.width >= size[0] and image.height >= size[1]
    # BOX averages every source pixel into its cell (a fair thumbnail); BICUBIC when a small crop is blown up
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return image.convert("RGB").resize(size, method)


def draw_outlines(pixels: Image.Image, source_size: tuple[int, int], outlines: Iterable[Outline]) -> Image.Image:
    """Draw each outline, given in source pixels, one pixel wide onto the cell-pixel image (in place; returned)."""
    sx, sy = pixels.width / source_size[0], pixels.height / source_size[1]
    draw = ImageDraw.Draw(pixels)
    for outline in outlines:
        x1, y1, x2, y2 = box_in_cells(outline.box, sx, sy, pixels.size)
        if outline.dotted:  # one pixel outside the box, so a small object inside stays visible
            w, h = pixels.size
            x1, y1, x2, y2 = max(0, x1 - 1), max(0, y1 - 1), min(w - 1, x2 + 1), min(h - 1, y2 + 1)
            points = [(x, y) for x in range(x1, x2 + 1) for y in (y1, y2)]
            points += [(x, y) for y in range(y1, y2 + 1) for x in (x1, x2)]
            draw.point([p for p in points if (p[0] + p[1]) % 2 == 0], fill=outline.colour)
        else:
            draw.rectangle([x1, y1, x2, y2], outline=outline.colour, width=1)
    return pixels


def box_in_cells(box: Sequence[float], sx: float, sy: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A source-pixel box as inclusive cell-pixel bounds, clipped to the picture and never empty."""
    w, h = size
    x1 = min(w - 1, max(0, int(box[0] * sx)))
    y1 = min(h - 1, max(0, int(box[1] * sy)))
    x2 = min(w - 1, max(x1, round(box[2] * sx) - 1))
    y2 = min(h - 1, max(y1, round(box[3] * sy) - 1))
    return x1, y1, x2, y2


def halfblocks(image: Image.Image, max_cols: int, max_rows: int, outlines: Iterable[Outline] = ()) -> HalfBlocks:
    """The image fitted into max_cols x max_rows cells with the outlines drawn on it, ready for console.print."""
    cols, rows = fit_cells(image.size, max_cols, max_rows)
    pixels = draw_outlines(cell_pixels(image, cols, rows), image.size, outlines)
    return HalfBlocks(pixels)


def pixel_lines(pixels: Image.Image) -> list[list[Segment]]:
    """One list of segments per text row: "▀" coloured upper pixel on lower pixel, runs of equal cells merged."""
    width, height = pixels.size
    data = pixels.load()
    styles: dict[tuple[RGB, RGB], Style] = {}
    lines = []
    for y in range(0, height - 1, 2):
        line: list[Segment] = []
        run, run_style = 0, None
        for x in range(width):
            key = (data[x, y], data[x, y + 1])
            style = styles.get(key)
            if style is None:
                style = styles[key] = Style(color=Color.from_rgb(*key[0]), bgcolor=Color.from_rgb(*key[1]))
            if style is run_style:
                run += 1
                continue
            if run:
                line.append(Segment(UPPER_HALF * run, run_style))
            run, run_style = 1, style
        if run:
            line.append(Segment(UPPER_HALF * run, run_style))
        lines.append(line)
    return lines


class HalfBlocks:
    """A rich renderable of cell pixels (see cell_pixels): exactly width x height/2 cells, never wrapped."""

    def __init__(self, pixels: Image.Image):
        self.pixels = pixels
        self.lines = pixel_lines(pixels)

    @property
    def cols(self) -> int:
        return self.pixels.width

    @property
    def rows(self) -> int:
        return len(self.lines)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.cols, self.cols)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from Segment.adjust_line_length(line, options.max_width) if self.cols > options.max_width else line
            yield Segment.line()
