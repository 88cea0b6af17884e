"""Files a trajectory leaves behind: its JSON, each crop as PNG, and an overlay of the boxes on the original."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from mgpo.episode import crop_original
from mgpo.types import Trajectory

TURN_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
GT_COLOUR = (255, 225, 25)


def crops(traj: Trajectory, original: Image.Image) -> list[tuple[int, Image.Image]]:
    """(turn number, crop) for every turn whose box was cropped, cut from the original as the engine did."""
    return [(i + 1, crop_original(original, t.box_original)) for i, t in enumerate(traj.turns) if t.box_original]


def overlay(traj: Trajectory, original: Image.Image, max_side: int = 2048) -> Image.Image:
    """The original (downscaled to max_side) with each turn's box in its own colour and the ground truth dashed."""
    scale = min(1.0, max_side / max(original.size))
    canvas = original.convert("RGB").resize(
        (max(1, round(original.width * scale)), max(1, round(original.height * scale)))
    )
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 300))
    if traj.gt_box:
        _dashed(draw, [v * scale for v in traj.gt_box], GT_COLOUR, width)
    for i, turn in enumerate(traj.turns):
        if not turn.box_original:
            continue
        colour = TURN_COLOURS[i % len(TURN_COLOURS)]
        box = [v * scale for v in turn.box_original]
        draw.rectangle(box, outline=colour, width=width)
        draw.text((box[0] + width + 2, box[1] + width + 2), f"turn {i + 1}", fill=colour)
    return canvas


def _dashed(draw: ImageDraw.ImageDraw, box: list[float], colour: tuple[int, int, int], width: int) -> None:
    x1, y1, x2, y2 = box
    dash = max(6, width * 4)
    for a, b, fixed, horizontal in ((x1, x2, y1, True), (x1, x2, y2, True), (y1, y2, x1, False), (y1, y2, x2, False)):
        pos = a
        while pos < b:
            end = min(pos + dash, b)
            line = [(pos, fixed), (end, fixed)] if horizontal else [(fixed, pos), (fixed, end)]
            draw.line(line, fill=colour, width=width)
            pos += 2 * dash


def save_artifacts(traj: Trajectory, original: Image.Image | None, out_dir: str | Path) -> list[Path]:
    """Write trajectory.json, crop_turnN.png per crop and overlay.png into out_dir; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "trajectory.json"]
    written[0].write_text(traj.to_json(indent=2) + "\n", encoding="utf-8")
    if original is None:
        return written
    for turn, piece in crops(traj, original):
        path = out / f"crop_turn{turn}.png"
        piece.save(path)
        written.append(path)
    path = out / "overlay.png"
    overlay(traj, original).save(path)
    written.append(path)
    return written
