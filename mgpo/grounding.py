"""The box rule, in one file: parse the box from model text, validate it in the model frame, map it to original
pixels, and ``ground``, which applies all of it to one turn (spec §2). Pure functions: no images, no model.

Strict parsing is the reference's ``truncate_at_json_bbox`` (spec §2): blocks are the matches of exactly
``STRICT_BLOCK``; a block counts when its stripped content decodes to a non-empty list of dicts, and its first entry
whose ``bbox_2d`` is four values passing ``isinstance(v, int)`` (JSON true/false included) and whose ``label`` is a
string wins; a block with no such entry is skipped and the search goes on. Lenient parsing also accepts what models
commonly emit instead, and records each acceptance so that nothing is silently forgiven.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mgpo.types import Box

if TYPE_CHECKING:
    from mgpo.protocol import ProtocolConfig

MIN_BOX_SIDE = 28  # a valid box is strictly wider and taller than this, in model-frame pixels
MAX_BOX_ASPECT = 100  # and its aspect ratio is strictly below this
NORMALIZED_RANGE = 1000  # Qwen2-VL / Qwen3-VL emit coordinates in [0, 1000]
CROP_GUARD_ASPECT = 150  # a mapped crop this elongated is replaced by the whole original (the reference's crop_image)

# The reference's pattern, character for character: lowercase tag, "\n" right after it and right before the closing
# fence, non-greedy. Its pairing of fences is part of the rule (an unclosed ```json block ends at the next "\n```").
STRICT_BLOCK = re.compile(r"```json\n([\s\S]*?)\n```")
_FENCE = re.compile(r"```([A-Za-z0-9_-]*)[ \t]*\n?(.*?)```", re.DOTALL)  # lenient: any fence, any tag, any spacing
NO_BOX = "no box found (needs a ```json block with bbox_2d [x1, y1, x2, y2] and a label)"


@dataclass(frozen=True)
class ParsedBox:
    """A box as the model wrote it, where its text ends, and any lenient acceptances."""

    box: Box
    label: str | None
    end: int  # index just past the block; text after it is cut from the turn
    notes: tuple[str, ...] = ()


@dataclass
class GroundingStep:
    """What the system does with one turn's output: the box, the next image, or why it fell back."""

    kept_text: str  # the turn as it stays in the conversation (cut after the JSON block)
    box_model: list[float] | None = None
    box_original: list[int] | None = None
    fallback: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cropped(self) -> bool:
        """True when the next turn is shown a crop (False: the whole image, on fallback)."""
        return self.box_original is not None


# ---------------------------------------------------------------------------------------------------------------
# The rule


def ground(text: str, frame: tuple[int, int], region: list[int], cfg: ProtocolConfig) -> GroundingStep:
    """Parse, validate and map one turn's box (spec §2): ``frame`` is the model frame of the image shown, ``region``
    the original-pixel part of the original it shows. Pure: no images, no model."""
    parsed = parse_box(text, lenient=cfg.lenient)
    if parsed is None:
        return GroundingStep(text, fallback=NO_BOX)
    step = GroundingStep(text[: parsed.end], box_model=parsed.box.as_list(), notes=list(parsed.notes))
    try:
        box = to_frame_pixels(parsed.box, frame, cfg.box_coords)
    except OverflowError:  # a coordinate of hundreds of digits: no float holds it, so no frame holds the box
        step.fallback = "box coordinates too large for the image"
        return step
    reason = check_box(box, frame)
    if reason and cfg.box_policy == "clamp":
        clamped = clamp_box(box, frame)
        if clamped is not None:
            step.notes.append(f"clamped: {reason}")
            box, reason = clamped, None
    if reason:
        step.fallback = reason
        return step
    step.box_original = map_to_original(box, frame, region)
    if crop_is_degenerate(step.box_original):
        step.notes.append(f"crop {step.box_original} is {CROP_GUARD_ASPECT}:1 or more: showing the whole image")
        step.box_original = list(region)
    return step


# ---------------------------------------------------------------------------------------------------------------
# Parsing


def parse_box(text: str, lenient: bool = False) -> ParsedBox | None:
    """Find the model's box in ``text``; None when there is none. Never raises."""
    if not isinstance(text, str):
        return None
    try:
        found = _parse_strict(text)
        if found is None and lenient:
            found = _parse_lenient(text)
        return found
    except (RecursionError, ValueError, OverflowError):  # pathological input: treat as "no box"
        return None


def _parse_strict(text: str) -> ParsedBox | None:
    for match in STRICT_BLOCK.finditer(text):
        data = _loads(match.group(1).strip())
        if not (isinstance(data, list) and data and all(isinstance(d, dict) for d in data)):
            continue
        for entry in data:
            coords = entry.get("bbox_2d")
            if _is_int_quad(coords) and isinstance(entry.get("label"), str):
                return ParsedBox(Box.of(int(c) for c in coords), entry["label"], match.end())
        # no valid entry in this block: the reference moves on to the next one
    return None


def _parse_lenient(text: str) -> ParsedBox | None:
    candidates: list[tuple[object, int, tuple[str, ...]]] = []
    for match in _FENCE.finditer(text):
        if match.group(1).lower() != "json":
            note: tuple[str, ...] = ("fence not tagged json",)
        elif not STRICT_BLOCK.fullmatch(match.group(0)):
            note = ("fence not in the strict ```json\\n...\\n``` form",)
        else:
            note = ()
        candidates.append((_loads(match.group(2)), match.end(), note))
    candidates.extend((data, end, ("unfenced JSON",)) for data, end in _scan_json(text))
    for data, end, notes in candidates:
        entries = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
        if isinstance(data, dict):
            notes = (*notes, "JSON object instead of a list")
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            coords = entry.get("bbox_2d")
            if not _is_number_quad(coords):
                continue
            extra = notes
            if not _is_int_quad(coords):
                extra = (*extra, "float coordinates")
            label = entry.get("label")
            if not isinstance(label, str):
                extra, label = (*extra, "missing label"), None
            return ParsedBox(Box.of(float(c) for c in coords), label, end, extra)
    return None


def _scan_json(text: str, limit: int = 64):
    """Yield (value, end) for JSON lists/objects starting anywhere in text, outermost first."""
    decoder = json.JSONDecoder()
    pos, seen, tries = 0, 0, 0
    while seen < limit and tries < 16 * limit:  # bounded: a 100 kB run of '[' must not cost a decode per bracket
        tries += 1
        starts = [i for i in (text.find("[", pos), text.find("{", pos)) if i >= 0]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            pos = start + 1
            continue
        seen += 1
        yield value, end
        pos = end


def _loads(payload: str) -> object:
    try:
        return json.loads(payload)
    except (json.JSONDecodeError, RecursionError):
        return None


def _is_int_quad(values: object) -> bool:
    # isinstance, not type(): bool is an int subclass, so JSON true/false pass as 1/0, exactly as in the reference
    return isinstance(values, list) and len(values) == 4 and all(isinstance(v, int) for v in values)


def _is_number_quad(values: object) -> bool:
    return isinstance(values, list) and len(values) == 4 and all(_finite(v) for v in values)


def _finite(value: object) -> bool:
    """A JSON number a float can hold: a 500-digit integer is no coordinate (and math.isfinite would overflow)."""
    if type(value) is int:
        return abs(value) < 10**300
    return type(value) is float and math.isfinite(value)


# ---------------------------------------------------------------------------------------------------------------
# Validation, in the model frame


def to_frame_pixels(box: Box, frame: tuple[int, int], coords: str) -> Box:
    """Express a model box in pixels of the frame the model saw (a no-op for 'resized-pixels')."""
    if coords == "resized-pixels":
        return box
    if coords == "normalized-1000":
        sx, sy = frame[0] / NORMALIZED_RANGE, frame[1] / NORMALIZED_RANGE
        return Box(box.x1 * sx, box.y1 * sy, box.x2 * sx, box.y2 * sy)
    raise ValueError(f"unknown coordinate convention {coords!r}; use 'resized-pixels' or 'normalized-1000'")


def check_box(box: Box, frame: tuple[int, int]) -> str | None:
    """Why ``box`` (frame pixels) is invalid under the reference's rules, or None if it is valid."""
    w, h = frame
    if not (box.x1 < box.x2 and box.y1 < box.y2):
        return "empty or inverted box (needs x1 < x2 and y1 < y2)"
    if box.x1 < 0 or box.y1 < 0 or box.x2 > w or box.y2 > h:
        return f"box outside the {w}x{h} image"
    if box.width <= MIN_BOX_SIDE or box.height <= MIN_BOX_SIDE:
        return f"box too small ({box.width:g}x{box.height:g}, each side must exceed {MIN_BOX_SIDE} px)"
    if max(box.width / box.height, box.height / box.width) >= MAX_BOX_ASPECT:
        return f"box aspect ratio over {MAX_BOX_ASPECT}:1"
    return None


def clamp_box(box: Box, frame: tuple[int, int]) -> Box | None:
    """Clip a box into the frame and grow it to the minimum side and aspect; None when it misses the frame or the
    frame holds no box the rules accept (a 5600x28 frame: no side can exceed 28 px), so clamping never lets
    through what the rules refuse."""
    w, h = frame
    x1, x2 = sorted((box.x1, box.x2))
    y1, y2 = sorted((box.y1, box.y2))
    if x2 < 0 or y2 < 0 or x1 > w or y1 > h:
        return None
    x1, x2 = _grow(max(x1, 0.0), min(x2, float(w)), MIN_BOX_SIDE + 1, w)
    y1, y2 = _grow(max(y1, 0.0), min(y2, float(h)), MIN_BOX_SIDE + 1, h)
    # then widen the short side until the aspect ratio is under the limit
    if (x2 - x1) * (MAX_BOX_ASPECT - 1) < (y2 - y1):
        x1, x2 = _grow(x1, x2, (y2 - y1) / (MAX_BOX_ASPECT - 1), w)
    if (y2 - y1) * (MAX_BOX_ASPECT - 1) < (x2 - x1):
        y1, y2 = _grow(y1, y2, (x2 - x1) / (MAX_BOX_ASPECT - 1), h)
    clamped = Box(x1, y1, x2, y2)
    return clamped if check_box(clamped, frame) is None else None


def _grow(lo: float, hi: float, size: float, limit: float) -> tuple[float, float]:
    """Grow [lo, hi] around its centre to at least ``size``, shifted to stay inside [0, limit]."""
    size = min(size, limit)
    if hi - lo >= size:
        return lo, hi
    centre = (lo + hi) / 2
    lo = min(max(centre - size / 2, 0.0), limit - size)
    return lo, lo + size


# ---------------------------------------------------------------------------------------------------------------
# Mapping to the original image


def map_to_original(box: Box, frame: tuple[int, int], region: list[int]) -> list[int]:
    """Map a frame-pixel box to original pixels as the reference does, in float32 (spec §2).

    x_orig = x0 + int(x * (1 / W_frame) * W_region), each step rounded to float32: the reference divides Python ints
    by 0-d int64 tensors, which torch computes as ``reciprocal(W) * x`` in float32, then multiplies by the size in
    float32. (float64 would move some coordinates by a pixel: 700 / 1344 * 1920 is 1000, the reference's is 999.)
    ``region`` is the part of the original image that was shown, in original pixels (the whole image on turn 1,
    the previous crop on later turns). The result is clipped to the region and is at least 1 px a side.
    """
    fw, fh = frame
    rx1, ry1, rx2, ry2 = region
    rw, rh = rx2 - rx1, ry2 - ry1
    x1 = rx1 + _scale_f32(box.x1, fw, rw)
    y1 = ry1 + _scale_f32(box.y1, fh, rh)
    x2 = rx1 + _scale_f32(box.x2, fw, rw)
    y2 = ry1 + _scale_f32(box.y2, fh, rh)
    x1, y1 = min(max(x1, rx1), rx2 - 1), min(max(y1, ry1), ry2 - 1)
    x2, y2 = min(max(x2, x1 + 1), rx2), min(max(y2, y1 + 1), ry2)
    return [x1, y1, x2, y2]


def _scale_f32(value: float, frame_side: int, size: int) -> int:
    f32 = np.float32
    return int(f32(f32(1.0) / f32(frame_side)) * f32(value) * f32(size))


def crop_is_degenerate(box: list[int]) -> bool:
    """The reference's crop guard: a mapped crop of 150:1 or more is replaced by the whole original image."""
    w, h = box[2] - box[0], box[3] - box[1]
    return w >= h * CROP_GUARD_ASPECT or h >= w * CROP_GUARD_ASPECT
