"""Box parsing, validation and mapping: examples from the spec and hypothesis properties."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mgpo import imaging
from mgpo.grounding import check_box, clamp_box, ground, map_to_original, parse_box, to_frame_pixels
from mgpo.protocol import ProtocolConfig
from mgpo.types import Box

PAPER = ProtocolConfig.paper()
CLAMP = ProtocolConfig.paper(box_policy="clamp", parsing="lenient")
PAPER_LIMITS = (PAPER.min_pixels, PAPER.max_pixels)


def block(payload: object) -> str:
    return f"```json\n{json.dumps(payload)}\n```"


# ---------------------------------------------------------------------------------------------------------------
# Parsing examples


def test_strict_parses_first_valid_entry_and_cuts_after_fence() -> None:
    text = "Looking.\n" + block(
        [{"bbox_2d": [1, 2, 3.5, 4], "label": "x"}, {"bbox_2d": [10, 20, 30, 40], "label": "cup"}]
    )
    text += "\nanswer \\boxed{A}"
    found = parse_box(text)
    assert found is not None
    assert found.box.as_list() == [10, 20, 30, 40] and found.label == "cup" and found.notes == ()
    assert text[: found.end].endswith("```") and "boxed" not in text[: found.end]


def test_strict_rejects_what_lenient_accepts() -> None:
    cases = {
        '[{"bbox_2d": [10, 20, 300, 400], "label": "cup"}]': "unfenced JSON",
        block([{"bbox_2d": [10.5, 20, 300, 400], "label": "cup"}]): "float coordinates",
        block([{"bbox_2d": [10, 20, 300, 400]}]): "missing label",
        block({"bbox_2d": [10, 20, 300, 400], "label": "cup"}): "JSON object instead of a list",
    }
    for text, note in cases.items():
        assert parse_box(text) is None, text
        found = parse_box(text, lenient=True)
        assert found is not None and note in found.notes, text


def test_strict_moves_on_to_the_next_block_when_none_of_a_blocks_entries_is_valid() -> None:
    text = (
        block([{"bbox_2d": [1, 2, 3], "label": "bad"}]) + "\n" + block([{"bbox_2d": [10, 20, 300, 400], "label": "ok"}])
    )
    found = parse_box(text)
    assert found is not None and found.label == "ok" and found.end == len(text)


def test_json_booleans_are_ints_as_in_the_reference() -> None:
    found = parse_box(block([{"bbox_2d": [True, False, 300, 400], "label": "x"}]))
    assert found is not None and found.box.as_list() == [1, 0, 300, 400]
    assert all(type(v) is int for v in found.box.as_list())
    assert parse_box(block([{"bbox_2d": [1, 2, 300], "label": "x"}]), lenient=True) is None


BOX_JSON = '[{"bbox_2d": [10, 20, 300, 400], "label": "cup"}]'


def test_strict_fence_is_exactly_the_reference_pattern() -> None:
    not_blocks = [
        f"```JSON\n{BOX_JSON}\n```",  # upper-case tag
        f"```json  \n{BOX_JSON}\n```",  # a space after the tag
        f"```json\r\n{BOX_JSON}\r\n```",  # CRLF line ends
        f"```json\n{BOX_JSON}```",  # closing fence on the JSON's own line
        f"```json {BOX_JSON}\n```",  # no newline after the tag
        f"```\n{BOX_JSON}\n```",  # untagged
    ]
    for text in not_blocks:
        assert parse_box(text) is None, repr(text)
        assert parse_box(text, lenient=True) is not None, repr(text)  # lenient still reads them, with a note
    # whitespace around the JSON inside a proper block is stripped, as the reference does
    assert parse_box(f"```json\n  \n{BOX_JSON}  \n\n```") is not None


def test_a_stray_fence_before_the_block_does_not_hide_it() -> None:
    text = f"I will use ``` fences.\n```json\n{BOX_JSON}\n```\nmore"
    found = parse_box(text)
    assert found is not None and text[: found.end].endswith(f"{BOX_JSON}\n```")
    # a python block first, then the json block
    text = f"```python\nprint(1)\n```\n```json\n{BOX_JSON}\n```"
    assert parse_box(text) is not None


def test_an_unclosed_json_block_swallows_the_next_opening_fence_like_the_reference_regex() -> None:
    # the non-greedy pattern pairs the first ```json\n with the next \n``` -- the opening fence of the real block --
    # so the real block's opening is consumed and the reference finds no box; strict parsing must agree
    text = f"```json\nnot json\n```json\n{BOX_JSON}\n```"
    assert parse_box(text) is None
    # whereas with a closed first block the search moves on and finds the second
    text = f"```json\nnot json\n```\n```json\n{BOX_JSON}\n```"
    assert parse_box(text) is not None


def test_the_cut_is_right_after_the_winning_blocks_closing_fence() -> None:
    first = block([{"bbox_2d": [1, 2, 3, 4.5], "label": "float"}])
    second = block([{"bbox_2d": [10, 20, 300, 400], "label": "cup"}])
    text = f"think {first} then {second}``` \\boxed{{A}}"
    found = parse_box(text)
    assert found is not None and text[: found.end] == f"think {first} then {second}"


@given(st.text())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_parsing_never_raises(text: str) -> None:
    for lenient in (False, True):
        found = parse_box(text, lenient=lenient)
        assert found is None or 0 <= found.end <= len(text)


@given(st.text(alphabet='[]{}"bbox_2dlabel:, 0123456789.-`json\n', max_size=200))
@settings(max_examples=400)
def test_parsing_never_raises_on_json_like_noise(text: str) -> None:
    parse_box(text)
    parse_box(text, lenient=True)


# ---------------------------------------------------------------------------------------------------------------
# Validation and mapping


def test_spec_worked_example() -> None:
    frame = imaging.model_frame(imaging.pre_resize_size((4000, 3000), *PAPER_LIMITS), 3136, 12_845_056)
    assert imaging.pre_resize_size((4000, 3000), *PAPER_LIMITS) == (1156, 867)
    assert frame == (1148, 868)
    assert imaging.model_frame((4000, 3000), *PAPER_LIMITS) == (1148, 840)  # a single smart_resize differs
    step = ground(block([{"bbox_2d": [100, 50, 400, 300], "label": "cup"}]), frame, [0, 0, 4000, 3000], PAPER)
    assert step.box_original == [348, 172, 1393, 1036] and step.fallback is None


def test_validity_rules_follow_the_reference() -> None:
    frame = (1148, 868)
    assert check_box(Box(0, 0, 1148, 868), frame) is None
    assert "inverted" in check_box(Box(10, 10, 5, 50), frame)
    assert "outside" in check_box(Box(-1, 0, 100, 100), frame)
    assert "outside" in check_box(Box(0, 0, 1149, 100), frame)
    assert "too small" in check_box(Box(0, 0, 28, 100), frame)  # exactly 28 is not > 28
    assert check_box(Box(0, 0, 29, 100), frame) is None
    assert "aspect" in check_box(Box(0, 0, 29, 2900), (3000, 3000))  # 100:1 is not < 100
    assert check_box(Box(0, 0, 30, 2900), (3000, 3000)) is None


def test_normalized_coordinates_map_through_the_frame() -> None:
    frame = (1148, 868)
    box = to_frame_pixels(Box(0, 0, 500, 1000), frame, "normalized-1000")
    assert box.as_list() == [0, 0, 574, 868]
    cfg = ProtocolConfig.paper(coords="normalized-1000")
    step = ground(block([{"bbox_2d": [0, 0, 500, 1000], "label": "left"}]), frame, [0, 0, 4000, 3000], cfg)
    assert step.box_original == [0, 0, 2000, 3000]


def test_clamp_policy_clips_and_grows() -> None:
    frame = (1148, 868)
    step = ground(block([{"bbox_2d": [-50, 10, 20, 30], "label": "edge"}]), frame, [0, 0, 4000, 3000], CLAMP)
    assert step.fallback is None and step.box_original is not None
    assert any(n.startswith("clamped") for n in step.notes)
    off = ground(block([{"bbox_2d": [2000, 2000, 2100, 2100], "label": "off"}]), frame, [0, 0, 4000, 3000], CLAMP)
    assert off.fallback is not None  # a box that misses the image entirely is not clamped into it


def test_clamp_never_accepts_a_box_the_rules_refuse() -> None:
    """A 5600x28 frame holds no valid box (no side can exceed 28 px): clamping falls back instead of accepting."""
    frame = (5600, 28)
    assert clamp_box(Box(0, 0, 5600, 28), frame) is None
    step = ground(block([{"bbox_2d": [0, 0, 5600, 28], "label": "strip"}]), frame, [0, 0, 5600, 28], CLAMP)
    assert step.fallback is not None and step.box_original is None


frames = st.tuples(st.integers(28, 3000), st.integers(28, 3000)).filter(lambda f: max(f) / min(f) <= 200)
coords = st.floats(-5000, 5000, allow_nan=False)


@given(frame=frames, raw=st.tuples(coords, coords, coords, coords))
@settings(max_examples=500, deadline=None)
def test_a_clamped_box_always_passes_the_rules(frame, raw) -> None:
    clamped = clamp_box(Box(*raw), frame)
    assert clamped is None or check_box(clamped, frame) is None


@given(
    frame=frames,
    original=st.tuples(st.integers(28, 9000), st.integers(28, 9000)),
    raw=st.tuples(coords, coords, coords, coords),
    clamp=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_accepted_box_gives_a_crop_inside_the_image_at_least_28px(frame, original, raw, clamp) -> None:
    box = Box(*raw)
    if clamp:
        clamped = clamp_box(box, frame)
        if clamped is None:
            return
        box = clamped
    if check_box(box, frame) is not None:
        return
    mapped = map_to_original(box, frame, [0, 0, *original])
    x1, y1, x2, y2 = mapped
    assert 0 <= x1 < x2 <= original[0] and 0 <= y1 < y2 <= original[1]
    crop_size = imaging.fit_side_limits(imaging.pre_resize_size((x2 - x1, y2 - y1), *PAPER_LIMITS))
    assert min(crop_size) >= 28 and max(crop_size) / min(crop_size) <= 200


def torch_float32_map(box: list[int], frame: tuple[int, int], original: tuple[int, int]) -> list[int]:
    """What the reference computes: Python ints divided by 0-d int64 tensors (grid * 14), times the original size."""
    import torch

    w, h = torch.tensor(frame[0], dtype=torch.int64), torch.tensor(frame[1], dtype=torch.int64)
    x1, y1, x2, y2 = box
    return [
        int(x1 / w * original[0]),
        int(y1 / h * original[1]),
        int(x2 / w * original[0]),
        int(y2 / h * original[1]),
    ]


def test_mapping_is_float32_like_the_reference() -> None:
    frame = imaging.model_frame(imaging.pre_resize_size((1920, 1080), *PAPER_LIMITS), 3136, 12_845_056)
    assert frame == (1344, 756)
    assert map_to_original(Box(175, 100, 700, 500), frame, [0, 0, 1920, 1080]) == [249, 142, 999, 714]
    assert map_to_original(Box(0, 0, 1344, 756), frame, [0, 0, 1920, 1080])[3] == 1079  # bottom edge
    assert torch_float32_map([175, 100, 700, 500], frame, (1920, 1080)) == [249, 142, 999, 714]


@given(
    frame=frames,
    original=st.tuples(st.integers(28, 9000), st.integers(28, 9000)),
    raw=st.tuples(*(st.integers(0, 3000) for _ in range(4))),
)
@settings(max_examples=2000, deadline=None)
def test_mapping_matches_torch_float32(frame, original, raw) -> None:
    x1, y1, x2, y2 = raw
    box = [min(x1, frame[0]), min(y1, frame[1]), min(x2, frame[0]), min(y2, frame[1])]
    if check_box(Box.of(box), frame) is not None:
        return
    got = map_to_original(Box.of(box), frame, [0, 0, *original])
    ref = torch_float32_map(box, frame, original)
    if ref[2] > ref[0] and ref[3] > ref[1]:
        assert got == ref
    else:  # a frame far larger than its original: the reference would crop an empty region, mgpo keeps 1 px a side
        assert got[2] - got[0] >= 1 and got[3] - got[1] >= 1


def test_mapping_matches_torch_float32_on_paper_frames() -> None:
    """Real frames (both resize steps) of many image sizes, boxes on a grid that includes the edges."""
    import random

    rng = random.Random(10)
    for _ in range(300):
        original = (rng.randint(300, 8000), rng.randint(300, 8000))
        if max(original) / min(original) > 50:
            continue
        pre = imaging.pre_resize_size(original, *PAPER_LIMITS)
        frame = imaging.model_frame(pre, 3136, 12_845_056)
        for _ in range(20):
            x1, y1 = rng.randint(0, frame[0] - 30), rng.randint(0, frame[1] - 30)
            box = [x1, y1, rng.randint(x1 + 29, frame[0]), rng.randint(y1 + 29, frame[1])]
            if rng.random() < 0.3:
                box[2:] = list(frame)
            if check_box(Box.of(box), frame) is None:
                got = map_to_original(Box.of(box), frame, [0, 0, *original])
                assert got == torch_float32_map(box, frame, original), (original, frame, box)


def test_crop_guard_uses_the_whole_original_for_a_150_to_1_crop() -> None:
    # the frame is square but the original 150:1, so a valid 2:1 box maps to a crop over 150:1
    step = ground(block([{"bbox_2d": [0, 0, 2000, 1000], "label": "strip"}]), (3000, 3000), [0, 0, 30000, 200], PAPER)
    assert step.fallback is None and step.box_original == [0, 0, 30000, 200]
    assert any("150" in n for n in step.notes)
    ok = ground(block([{"bbox_2d": [0, 0, 300, 1000], "label": "ok"}]), (3000, 3000), [0, 0, 30000, 200], PAPER)
    assert ok.box_original == torch_float32_map([0, 0, 300, 1000], (3000, 3000), (30000, 200)) and not ok.notes


def test_clamped_boxes_are_always_valid() -> None:
    @given(frame=frames, raw=st.tuples(coords, coords, coords, coords))
    @settings(max_examples=300)
    def inner(frame, raw) -> None:
        clamped = clamp_box(Box(*raw), frame)
        if clamped is not None and min(frame) > 29 and max(frame) / min(frame) < 99:
            assert check_box(clamped, frame) is None

    inner()


def test_crop_is_cut_from_the_original_pixels() -> None:
    original = Image.new("RGB", (4000, 3000), (0, 0, 0))
    original.paste((255, 0, 0), (348, 172, 1393, 1036))
    piece = imaging.crop(original, [348, 172, 1393, 1036])
    assert piece.size == (1045, 864)
    assert piece.getextrema() == ((255, 255), (0, 0), (0, 0))
