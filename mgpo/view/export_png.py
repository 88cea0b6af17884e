"""`mgpo show --png`: one picture per trajectory with the original and its boxes, the crops, and captions.

The original with boxes is mgpo.artifacts.overlay (the same picture `mgpo infer --save-dir` writes); the crops are
mgpo.artifacts.crops, framed in their turn's colour. Where each part lands is returned with the picture, so a test
(or a caller) can find the boxes in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mgpo.artifacts import crops, overlay
from mgpo.view.panels import fmt_box, turn_colour
from mgpo.view.records import Record, load_original

PAD = 16
CROP_WIDTH = 360
FONT_SIZE = 16
INK = (20, 20, 20)
MUTED = (110, 110, 110)
PAPER = (255, 255, 255)
RED, GREEN = (200, 30, 30), (20, 140, 50)
GT_INK = (170, 140, 0)  # the ground-truth yellow, darkened to be readable on white


@dataclass
class Composite:
    """The picture and where the original sits in it: (left, top, width, height) and pixels per original pixel."""

    image: Image.Image
    overview: tuple[int, int, int, int] | None
    scale: float
    crop_boxes: list[tuple[int, tuple[int, int, int, int]]] = field(default_factory=list)  # (turn, l, t, r, b)


def composite(record: Record, original: Image.Image | None, note: str | None = None, max_side: int = 1200):
    """Lay out header, original with boxes, crops at the side and a caption per turn for one record."""
    traj = record.trajectory
    font, small = _font(FONT_SIZE), _font(FONT_SIZE - 3)
    line_h = FONT_SIZE + 6
    pictured = overlay(traj, original, max_side) if original is not None else None
    ov_w, ov_h = pictured.size if pictured is not None else (640, 120)
    pieces = crops(traj, original) if original is not None else []
    crop_h = _crop_heights(pieces, ov_h, line_h)
    width = PAD + ov_w + (PAD + CROP_WIDTH if pieces else 0) + PAD
    text_w = width - 2 * PAD

    head = [(f"{' · '.join(t for t in (record.label, record.task, record.category) if t)}", MUTED, small)]
    head += [(line, INK, font) for line in _wrap(traj.question, font, text_w)]
    if traj.choices:
        options = "   ".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(traj.choices))
        head += [(line, INK, font) for line in _wrap(options, font, text_w)]
    foot = _caption_lines(record, font, small, text_w)
    body_h = max(ov_h, sum(crop_h) + len(pieces) * (line_h + PAD))
    height = PAD + len(head) * line_h + PAD + body_h + PAD + len(foot) * line_h + PAD

    canvas = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(canvas)
    y = PAD
    for text, colour, f in head:
        draw.text((PAD, y), text, fill=colour, font=f)
        y += line_h
    top = y + PAD
    if pictured is not None:
        canvas.paste(pictured, (PAD, top))
        placed: tuple[int, int, int, int] | None = (PAD, top, ov_w, ov_h)
        scale = ov_w / original.width  # type: ignore[union-attr]
    else:
        draw.rectangle([PAD, top, PAD + ov_w, top + ov_h], fill=(235, 235, 235))
        draw.text((PAD + 10, top + 10), note or "no image", fill=RED, font=font)
        placed, scale = None, 0.0
    result = Composite(canvas, placed, scale)
    cy, cx = top, PAD + ov_w + PAD
    for (number, piece), h in zip(pieces, crop_h, strict=True):
        colour = turn_colour(number - 1)
        x1, y1, x2, y2 = traj.turns[number - 1].box_original or [0, 0, 0, 0]
        draw.text((cx, cy), f"turn {number} crop  {x2 - x1}x{y2 - y1} px", fill=colour, font=font)
        cy += line_h
        w = max(1, round(piece.width * h / piece.height))
        method = Image.Resampling.NEAREST if h > piece.height else Image.Resampling.LANCZOS  # show real pixels
        canvas.paste(piece.convert("RGB").resize((w, h), method), (cx, cy))
        draw.rectangle([cx - 3, cy - 3, cx + w + 2, cy + h + 2], outline=colour, width=3)
        result.crop_boxes.append((number, (cx, cy, cx + w, cy + h)))
        cy += h + PAD
    y = top + body_h + PAD
    for text, colour, f in foot:
        draw.text((PAD, y), text, fill=colour, font=f)
        y += line_h
    return result


def _crop_heights(pieces: list[tuple[int, Image.Image]], ov_h: int, line_h: int) -> list[int]:
    """Each crop's height in the column: CROP_WIDTH wide at most, sharing the original's height between them."""
    if not pieces:
        return []
    share = max(120, (ov_h - len(pieces) * (line_h + PAD)) // len(pieces))
    return [max(1, min(share, round(p.height * CROP_WIDTH / max(1, p.width)))) for _, p in pieces]


def _caption_lines(record: Record, font, small, width: int) -> list[tuple[str, tuple[int, int, int], object]]:
    traj = record.trajectory
    lines: list[tuple[str, tuple[int, int, int], object]] = []
    for i, turn in enumerate(traj.turns):
        parts = [f"turn {i + 1}:"]
        if turn.box_model is not None:
            parts.append(f"box {fmt_box(turn.box_model)} in the {_wh(turn.frame_size)} frame")
        if turn.box_original is not None:
            parts.append(f"-> {fmt_box(turn.box_original)} in the original")
        if turn.fallback:
            parts.append(f"fallback: {turn.fallback}")
        parts.append(f"({turn.visual_tokens} visual + {turn.output_tokens} output tokens, {turn.seconds:.2f}s)")
        lines += [(text, turn_colour(i), small) for text in _wrap(" ".join(parts), small, width)]
    verdict = f"answer {traj.answer or 'none'}"
    if record.ground_truth is not None:
        verdict += f"   ground truth {record.ground_truth}"
    if record.correct is not None:
        verdict += "   correct" if record.correct else "   wrong"
    colour = INK if record.correct is None else (GREEN if record.correct else RED)
    lines.append((verdict, colour, font))
    if traj.gt_box:
        lines.append((f"dashed yellow: ground-truth box {fmt_box(traj.gt_box)}", GT_INK, small))
    if traj.error:
        lines += [(text, RED, small) for text in _wrap(f"error: {traj.error}", small, width)]
    return lines


def export_png(records: list[Record], out: str | Path) -> list[Path]:
    """Write one composite per record: OUT itself for one, OUT-001.png, OUT-002.png ... for several."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        out = out.with_name(out.name + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for i, record in enumerate(records, 1):
        path = out if len(records) == 1 else out.with_name(f"{out.stem}-{i:03d}.png")
        image, note = load_original(record)
        composite(record, image, note).image.save(path, "PNG")
        written.append(path)
    return written


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap by rendered width; explicit newlines kept."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}" if line else word
            if line and font.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _wh(size: list[int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "?"
