"""The terminal view of a trajectory: pictures with boxes and crops on a colour console, plain text otherwise;
and the entry points infer (print_trajectory) and eval (show_failures) call."""

from __future__ import annotations

import io
import re

from PIL import Image
from rich.console import Console

from mgpo.artifacts import TURN_COLOURS
from mgpo.view import print_trajectory, render_trajectory
from mgpo.view.halfblock import UPPER_HALF, HalfBlocks, box_in_cells
from mgpo.view.records import load_original, load_records
from mgpo.view.show import print_records, show_failures
from mgpo.view.terminal import build_view, crop_pictures, picture_column

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _colour_console(width: int = 120, height: int = 40, system: str = "truecolor") -> Console:
    return Console(file=io.StringIO(), width=width, height=height, force_terminal=True, color_system=system)


def _plain_console(width: int = 100) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=False)


def _sgr(rgb: tuple[int, int, int]) -> str:
    return "2;{};{};{}".format(*rgb)


def test_colour_view_has_picture_box_crop_and_text(eval_run):
    record = load_records(eval_run.path)[0]
    image, note = load_original(record)
    assert note is None
    console = _colour_console()
    console.print(build_view(record, image, 120, 40, colour=True))
    out = console.file.getvalue()
    text = ANSI.sub("", out)
    assert UPPER_HALF * 20 in text  # the pictures
    assert _sgr(TURN_COLOURS[0]) in out  # turn 1's box outline (and panel border) colour
    for part in ("original 1200x900", "turn 1 crop", "turn 1", "turn 2", "box (model)", "box (original)"):
        assert part in text
    box = record.trajectory.turns[0].box_original
    assert "[{}, {}, {}, {}]".format(*box) in text
    assert "answer A" in text and "ground truth A" in text and "✓ correct" in text
    assert len(text.splitlines()) <= 40  # the pictures are sized to the terminal


def test_box_outline_is_at_the_box_and_the_crop_is_more_detailed(eval_run):
    record = load_records(eval_run.path)[0]
    image, _ = load_original(record)
    column = picture_column(record, image, 50, 38)
    overview = column.renderables[1]
    assert isinstance(overview, HalfBlocks)
    px = overview.pixels
    box = record.trajectory.turns[0].box_original
    x1, y1, x2, y2 = box_in_cells(box, px.width / image.width, px.height / image.height, px.size)
    for point in [(x1, y1), (x2, y2), ((x1 + x2) // 2, y1), (x1, (y1 + y2) // 2)]:
        assert px.getpixel(point) == TURN_COLOURS[0], point
    ((number, crop),) = crop_pictures(record, image, 50, 18)
    assert number == 1
    crop_scale = crop.pixels.width / (box[2] - box[0])
    assert crop_scale > 4 * (px.width / image.width)  # the crop is drawn at a much larger scale


def test_narrow_console_puts_pictures_above_the_text(eval_run):
    record = load_records(eval_run.path)[0]
    image, _ = load_original(record)
    console = _colour_console(width=80, height=40)
    console.print(build_view(record, image, 80, 40, colour=True))
    lines = ANSI.sub("", console.file.getvalue()).splitlines()
    first_text = next(i for i, line in enumerate(lines) if "What colour is the cup?" in line)
    assert all(UPPER_HALF not in line for line in lines[first_text:])
    assert any(UPPER_HALF in line and "turn 1 crop" not in line for line in lines[:first_text])


def test_missing_image_is_one_line_and_the_text_is_still_shown(eval_run):
    record = load_records(eval_run.path)[0]
    record.trajectory.image_path = "/nonexistent/gone.png"
    console = _colour_console()
    print_records([record], console)
    text = ANSI.sub("", console.file.getvalue())
    assert "image not found: /nonexistent/gone.png; showing the text only" in text
    assert UPPER_HALF not in text and "turn 1" in text and "answer A" in text


def test_plain_text_has_no_escape_codes_and_every_fact(eval_run):
    records = load_records(eval_run.path)
    console = _plain_console(width=200)  # wide enough that no fact wraps
    print_records(records, console)
    out = console.file.getvalue()
    assert "\x1b" not in out and UPPER_HALF not in out
    for record in records:
        assert record.trajectory.question in out and f"image {record.trajectory.image_path}" in out
        for turn in record.trajectory.turns:
            if turn.box_original:
                assert "[{}, {}, {}, {}]".format(*turn.box_original) in out
    assert re.search(r"fallback +" + re.escape(records[2].trajectory.turns[0].fallback), out)
    assert "✗ wrong" in out and "accuracy 1/3 = 33.3%" in out


def test_print_trajectory_uses_the_image_infer_has_in_hand(eval_run):
    traj = eval_run.trajectories[0]
    image = Image.open(eval_run.images["s1"]).convert("RGB")
    console = _colour_console()
    print_trajectory(traj, console, image=image)
    assert UPPER_HALF in console.file.getvalue()
    console = _colour_console()
    print_trajectory(traj, console)  # no image given: loaded from image_path
    assert UPPER_HALF in console.file.getvalue()
    console = _plain_console()
    print_trajectory(traj, console, image=image)
    assert "\x1b" not in console.file.getvalue() and "turn 2" in console.file.getvalue()
    # the renderable on its own is the same view: pictures with colour, the turns' text and boxes without
    console = _colour_console()
    console.print(render_trajectory(traj, image, width=120, height=40, colour=True))
    assert UPPER_HALF in console.file.getvalue()
    console = _plain_console(width=200)
    console.print(render_trajectory(traj, image, width=200, colour=False))
    out = console.file.getvalue()
    assert UPPER_HALF not in out and traj.question in out and "turn 2" in out
    assert "[{}, {}, {}, {}]".format(*traj.turns[0].box_original) in out


def test_show_failures_prints_the_first_n_wrong_answers(eval_run):
    console = _plain_console()
    assert show_failures(eval_run.rows, 1, console) == 1
    out = console.file.getvalue()
    assert "s2" in out and "s3" not in out and "✗ wrong" in out and "first 1 failure(s)" in out
    console = _plain_console()
    assert show_failures(eval_run.trajectories, 5, console) == 2  # Trajectories work too
    assert show_failures(eval_run.rows[:1], 3, _plain_console()) == 0


def test_show_failures_takes_images_from_a_mapping(eval_run):
    rows = [dict(r, trajectory=dict(r["trajectory"], image_path=None)) for r in eval_run.rows]
    images = {"s2": Image.open(eval_run.images["s2"]).convert("RGB")}
    console = _colour_console()
    show_failures(rows, 2, console, images=images)
    text = ANSI.sub("", console.file.getvalue())
    assert text.count("original 1200x900") == 1  # s2 drawn from the mapping
    assert "no image: the trajectory has no image_path" in text  # s3 has none


def test_control_characters_in_model_text_are_shown_not_executed(eval_run):
    record = load_records(eval_run.path)[0]
    record.trajectory.turns[1].output = "\x1b[2J\x1b]0;pwned\x07 red \\boxed{A}"
    record.trajectory.question = "What colour\x1b[31m is the cup?"
    console = _plain_console(width=200)
    print_records([record], console)
    out = console.file.getvalue()
    assert "\x1b" not in out and "^[[2J^[]0;pwned^G red \\boxed{A}" in out and "What colour^[[31m is" in out
    console = _colour_console()
    print_records([record], console)
    assert "\x1b[2J" not in console.file.getvalue() and "\x1b]0;" not in console.file.getvalue()


def test_no_color_terminal_gets_the_text_view(eval_run):
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system="truecolor", no_color=True)
    print_records(load_records(eval_run.path)[:1], console)
    text = ANSI.sub("", console.file.getvalue())
    assert UPPER_HALF not in text and "box (original)" in text and "boxes are listed per turn" in text


def test_undecodable_model_output_is_shown_escaped(eval_run):
    record = load_records(eval_run.path)[0]
    record.trajectory.turns[0].output = "caf\ufffd\ufffd and a box"
    console = _plain_console(width=200)
    print_records([record], console)
    out = console.file.getvalue()
    assert "\ufffd" not in out and "caf\\ufffd\\ufffd and a box" in out
