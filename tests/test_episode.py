"""The one Episode: start, the system's step after each turn (crop, fallback, answer), the scored response."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mgpo import imaging, protocol
from mgpo.episode import Episode
from mgpo.grounding import NO_BOX
from mgpo.protocol import ProtocolConfig


def box_text(box: list[int]) -> str:
    return f"Looking.\n```json\n{json.dumps([{'bbox_2d': box, 'label': 'x'}])}\n```"


def gradient(size: tuple[int, int]) -> Image.Image:
    """An image whose pixels differ everywhere, so a crop from the wrong place or the wrong image shows."""
    image = Image.new("RGB", size)
    image.putdata([(x % 256, y % 256, (x + y) % 256) for y in range(size[1]) for x in range(size[0])])
    return image


def test_start_pre_resizes_and_asks_for_a_box() -> None:
    cfg = ProtocolConfig.paper()
    original = gradient((4000, 3000))
    ep = Episode(original, "What colour?", ["red", "blue"], cfg)
    assert ep.full_view.size == imaging.pre_resize_size(original.size, cfg.min_pixels, cfg.max_pixels)
    assert ep.view is ep.full_view and ep.region == [0, 0, 4000, 3000] and ep.frame == (1148, 868)
    assert [m["role"] for m in ep.messages] == ["system", "user"]
    assert "(A) red" not in protocol.message_text(ep.messages[-1])  # choices only come in turn 2
    assert not ep.done and ep.response == ""


def test_a_valid_box_crops_the_original_and_the_answer_ends_the_episode() -> None:
    cfg = ProtocolConfig.paper()
    original = gradient((4000, 3000))
    ep = Episode(original, "What colour?", ["red", "blue"], cfg)
    text = box_text([0, 0, 574, 434]) + "\nso \\boxed{A}"
    step = ep.step(text)
    assert step is not None and step.cropped and step.box_original == [0, 0, 2000, 1500]
    assert step.kept_text == box_text([0, 0, 574, 434])  # cut after the JSON block
    assert ep.region == [0, 0, 2000, 1500]
    # the view is the crop of the ORIGINAL, resized under the crop limits
    expected = imaging.resize_crop(original.crop((0, 0, 2000, 1500)), cfg.crop_min_pixels, cfg.crop_max_pixels)
    assert ep.view.size == expected.size and ep.view.tobytes() == expected.tobytes()
    assistant, follow = ep.messages[-2:]
    assert protocol.message_text(assistant) == step.kept_text
    follow_text = protocol.message_text(follow)
    assert follow_text.startswith(protocol.CROP_HEADER) and "(B) blue" in follow_text
    assert ep.step("It is blue. \\boxed{B}") is None
    assert ep.done and ep.kept == [step.kept_text, "It is blue. \\boxed{B}"]
    assert ep.response == "It is blue. \\boxed{B}"  # the final turn, what scoring reads
    with pytest.raises(RuntimeError, match="done"):
        ep.step("more")


def test_no_box_falls_back_to_the_whole_image() -> None:
    ep = Episode(gradient((900, 700)), "q?", ["a", "b"], ProtocolConfig.paper())
    step = ep.step("I cannot tell. \\boxed{A}")  # a turn-1 answer does not end the episode
    assert step is not None and step.fallback == NO_BOX and not step.cropped
    assert ep.view is ep.full_view and ep.region == [0, 0, 900, 700] and not ep.done
    assert protocol.message_text(ep.messages[-1]).startswith(protocol.FALLBACK_HEADER)


def test_later_turns_answer_early_or_zoom_again() -> None:
    cfg = ProtocolConfig.paper(max_turns=3)
    ep = Episode(gradient((4000, 3000)), "q?", ["a", "b"], cfg)
    ep.step(box_text([0, 0, 574, 434]))
    assert "instead output the coordinates" in protocol.message_text(ep.messages[-1])  # turn 2 may ask again
    second = ep.step(box_text([0, 0, 574, 434]))  # mapped from the crop, not from the whole image
    assert second is not None and second.box_original == [0, 0, 1000, 750] and ep.region == [0, 0, 1000, 750]
    assert "instead output the coordinates" not in protocol.message_text(ep.messages[-1])  # turn 3 must answer
    early = Episode(gradient((4000, 3000)), "q?", ["a", "b"], cfg)
    early.step(box_text([0, 0, 574, 434]))
    assert early.step("\\boxed{B}") is None and early.done and early.turn == 2


def test_single_turn_answers_at_once_and_forks_share_the_start() -> None:
    direct = Episode(gradient((500, 500)), "q", ["a", "b"], ProtocolConfig.direct())
    assert [m["role"] for m in direct.messages] == ["user"]
    twin = direct.fork()
    assert direct.step("\\boxed{B}") is None and direct.response == "\\boxed{B}"
    assert twin.full_view is direct.full_view and not twin.done and twin.kept == []  # its own conversation
    with pytest.raises(RuntimeError, match="before its first step"):
        direct.fork()
