"""One trajectory laid out for a terminal: pictures (original with boxes, crops) beside or above the text panels.

On a colour console the original is drawn in half-blocks with every turn's box outlined in its colour (the ground
truth box dotted), and each crop is drawn from the ORIGINAL pixels at its own, larger scale. Without colours (output
redirected to a file or pipe) pictures are meaningless, so the view is the text alone, with one line about the image.
"""

from __future__ import annotations

from PIL import Image
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from mgpo.artifacts import GT_COLOUR, crops
from mgpo.view.halfblock import HalfBlocks, Outline, fit_cells, halfblocks
from mgpo.view.panels import GT_STYLE, clean, text_parts, turn_colour, turn_style
from mgpo.view.records import Record

WIDE = 100  # from this width on, pictures sit left of the text; below it, above the text
CAPTION_ROWS = 1


def build_view(
    record: Record,
    image: Image.Image | None,
    width: int,
    height: int | None,
    colour: bool,
    prompts: bool = False,
    image_note: str | None = None,
) -> RenderableType:
    """The whole view of one record for a console of width x height (height None: not bounded)."""
    texts = text_parts(record, prompts)
    if not colour or image is None:
        return Group(image_line(record, image, image_note, colour), *texts)
    if width >= WIDE:
        left = min(60, max(30, int(width * 0.42)))
        budget = max(8, (height or left) - 2)
        pictures = picture_column(record, image, left, budget)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=left, no_wrap=True)
        grid.add_column(ratio=1)
        grid.add_row(pictures, Group(*texts))
        return grid
    budget = max(8, int((height or width // 2) * 0.6))
    return Group(picture_row(record, image, width, budget), *texts)


def image_line(record: Record, image: Image.Image | None, note: str | None, colour: bool) -> Text:
    """One line about the original: where it is, or why it is not drawn."""
    if note:
        return Text(f"{clean(note)}; showing the text only", style="yellow")
    path = clean(record.trajectory.image_path or "(in memory)")
    size = f" ({image.width}x{image.height})" if image is not None else ""
    return Text(f"image {path}{size}" + ("" if colour else "; boxes are listed per turn"), style="dim")


# ---------------------------------------------------------------------------------------------------------------
# Pictures


def overview_outlines(record: Record) -> list[Outline]:
    """The ground truth box (dotted) under every turn's box, each in its turn's colour."""
    traj = record.trajectory
    found = [Outline(traj.gt_box, GT_COLOUR, dotted=True)] if traj.gt_box else []
    found += [Outline(t.box_original, turn_colour(i)) for i, t in enumerate(traj.turns) if t.box_original]
    return found


def crop_pictures(record: Record, image: Image.Image, cols: int, rows: int) -> list[tuple[int, HalfBlocks]]:
    """(turn number, picture) per crop, each fitted to cols x rows; later turns' boxes inside it are outlined."""
    traj = record.trajectory
    found = []
    for number, piece in crops(traj, image):
        region = traj.turns[number - 1].box_original
        assert region is not None
        if piece.width < 1 or piece.height < 1:
            continue
        inner = [
            Outline([v - region[k % 2] for k, v in enumerate(t.box_original)], turn_colour(j))
            for j, t in enumerate(traj.turns[number:], start=number)
            if t.box_original
        ]
        found.append((number, halfblocks(piece, cols, rows, inner)))
    return found


def legend(record: Record, image: Image.Image) -> Text:
    text = Text(f"original {image.width}x{image.height} ", style="bold")
    for i, turn in enumerate(record.trajectory.turns):
        if turn.box_original:
            text.append("■", style=turn_style(i))
            text.append(f" turn {i + 1} ")
    if record.trajectory.gt_box:
        text.append("┅", style=GT_STYLE)
        text.append(" truth")
    return text


def crop_caption(record: Record, number: int) -> Text:
    box = record.trajectory.turns[number - 1].box_original or []
    text = Text("■ ", style=turn_style(number - 1))
    text.append(f"turn {number} crop ", style="bold")
    text.append(f"{box[2] - box[0]}x{box[3] - box[1]} px", style="dim")
    return text


def picture_column(record: Record, image: Image.Image, cols: int, rows: int) -> Group:
    """Original above its crops, within cols x rows cells (captions included)."""
    pieces: list[RenderableType] = [legend(record, image)]
    has_crops = any(t.box_original for t in record.trajectory.turns)
    overview_rows = (rows - 2 * CAPTION_ROWS) // 2 if has_crops else rows - CAPTION_ROWS
    overview = halfblocks(image, cols, overview_rows, overview_outlines(record))
    pieces.append(overview)
    if has_crops:
        left = max(4, rows - overview.rows - 2 * CAPTION_ROWS)
        pieces.append(crop_grid(record, image, cols, left))
    return Group(*pieces)


def picture_row(record: Record, image: Image.Image, width: int, rows: int) -> RenderableType:
    """Original beside its crops, within width x rows cells: the layout for narrow consoles."""
    has_crops = any(t.box_original for t in record.trajectory.turns)
    if not has_crops:
        return Group(legend(record, image), halfblocks(image, width, rows - CAPTION_ROWS, overview_outlines(record)))
    ov_cols, _ = fit_cells(image.size, int(width * 0.6), rows - CAPTION_ROWS)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=ov_cols, no_wrap=True)
    grid.add_column(no_wrap=True)
    overview = Group(legend(record, image), halfblocks(image, ov_cols, rows - CAPTION_ROWS, overview_outlines(record)))
    grid.add_row(overview, crop_grid(record, image, width - ov_cols - 1, rows - CAPTION_ROWS))
    return grid


def crop_grid(record: Record, image: Image.Image, cols: int, rows: int) -> RenderableType:
    """Every crop with its caption, side by side when there are several."""
    n = sum(1 for t in record.trajectory.turns if t.box_original)
    each = max(4, (cols - (n - 1)) // max(1, n))
    grid = Table.grid(padding=(0, 1))
    cells = []
    for number, picture in crop_pictures(record, image, each, rows - CAPTION_ROWS):
        grid.add_column(width=each, no_wrap=True)
        cells.append(Group(crop_caption(record, number), picture))
    if not cells:
        return Text("")
    grid.add_row(*cells)
    return grid


# ---------------------------------------------------------------------------------------------------------------
# Printing


def draws_pictures(console: Console) -> bool:
    """Whether the console shows colours: not when redirected, nor under NO_COLOR (blocks without colour are noise)."""
    return console.color_system is not None and not console.no_color


def print_record(
    record: Record,
    console: Console,
    image: Image.Image | None = None,
    image_note: str | None = None,
    prompts: bool = False,
) -> None:
    """Print one record's view sized to the console (pictures only when the console has colours)."""
    colour = draws_pictures(console)
    height = console.height if console.is_terminal else None
    console.print(build_view(record, image, console.width, height, colour, prompts, image_note))
