"""The paper preset's texts, checked character for character against the spec (mgpo-protocol.md §1)."""

from __future__ import annotations

import pytest
from PIL import Image

from mgpo import protocol
from mgpo.backends.hf import render_inputs
from mgpo.backends.scripted import ScriptedBackend
from mgpo.engine import Engine
from mgpo.protocol import ProtocolConfig
from mgpo.types import Sample

# The spec's texts, verbatim (authors' wording and typos included).
SPEC_SYSTEM = (
    "You are a helpful assistant. Given an image and one question. First, identify the coordinates of the key image "
    "area relevant to solving the problem. Append the coordinates in JSON format at the end of your response and stop. "
    "This will trigger cropping of the corresponding area in the original image and enlarge it for improved clarity. "
    "Once the enlarged image is available, provide the final answer (A, B, C, D, or E) enclosed within \\boxed{}."
)
SPEC_POST = "Out the coordinates of the key image area relevant to the problem in JSON format."
SPEC_CROP = (
    "Based on the provided coordinates, return the sub-image:\n<image>\nQuestion: {question} {choices}Carefully "
    "analyze both the original image and the enlarged sub-image to solve the question step by step. If the sub-image "
    "does not provide sufficient information, refer to the original image to find the solution. Present your "
    "reasoning clearly, and provide the final answer (A, B, C, D, or E) enclosed within \\boxed{{}}."
)
SPEC_FALLBACK = (
    "Not providing correct coordinates or invalid coordinate values, return the original image:\n<image>\nQuestion: "
    "{question} {choices}Carefully analyze the original image to solve the question step by step. Present your "
    "reasoning clearly, and provide the final answer (A, B, C, D, or E) enclosed within \\boxed{{}}."
)
VISION = "<|vision_start|><|image_pad|><|vision_end|>"

QUESTION = "What is the color of the cup?"
CHOICES = ["red", "blue", "green", "yellow"]
CHOICES_TEXT = "The choices are listed below:\n(A) red\n(B) blue\n(C) green\n(D) yellow\n"
TURN1 = 'The cup is on the table.\n```json\n[{"bbox_2d": [100, 50, 400, 300], "label": "cup"}]\n```'
TURN1_TAIL = "\nSo the answer is \\boxed{B}."  # written after the block: cut by the protocol
TURN2 = "The cup is red.\n\\boxed{A}"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is it", "Question: What is it."),
        ("What is it?", "Question: What is it?"),
        ("Look!", "Question: Look!"),
        ("Say 'hi.'", "Question: Say 'hi.'"),
        ("Done.", "Question: Done."),
    ],
)
def test_question_line_adds_period_only_when_needed(question: str, expected: str) -> None:
    assert protocol.question_line(question) == expected


def test_choices_block_is_mme_realworld_style() -> None:
    assert protocol.choices_block(CHOICES) == CHOICES_TEXT
    assert protocol.choices_block([]) == ""


def _conversation(turn1: str, size: tuple[int, int] = (4000, 3000)) -> str:
    """Run the engine with scripted outputs and render the final conversation through Qwen's chat template."""
    captured: list = []

    class Recording(ScriptedBackend):
        def generate(self, requests):
            captured.append([r.messages for r in requests])
            return super().generate(requests)

    backend = Recording([{"turns": [turn1, TURN2]}])
    traj = Engine(backend, ProtocolConfig.paper()).run([Sample(Image.new("RGB", size), QUESTION, CHOICES, "A")])[0]
    assert traj.error is None and len(traj.turns) == 2
    return captured[-1][0], traj


def _render(tiny_processor, messages) -> str:
    return tiny_processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_valid_box_conversation_matches_spec(tiny_processor) -> None:
    messages, traj = _conversation(TURN1 + TURN1_TAIL)
    expected = (
        f"<|im_start|>system\n{SPEC_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{VISION}Question: {QUESTION} {SPEC_POST}<|im_end|>\n"
        f"<|im_start|>assistant\n{TURN1}<|im_end|>\n"
        "<|im_start|>user\n"
        + SPEC_CROP.format(question=QUESTION, choices=CHOICES_TEXT).replace("<image>", VISION)
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert _render(tiny_processor, messages) == expected
    assert traj.turns[1].prompt == SPEC_CROP.format(question=QUESTION, choices=CHOICES_TEXT)
    assert traj.answer == "A" and traj.correct is True  # the \boxed{B} after the block was cut


def test_fallback_conversation_matches_spec(tiny_processor) -> None:
    bad = '```json\n[{"bbox_2d": [100, 50, 110, 300], "label": "cup"}]\n```'  # 10 px wide: too small
    messages, traj = _conversation(bad)
    expected = (
        f"<|im_start|>system\n{SPEC_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{VISION}Question: {QUESTION} {SPEC_POST}<|im_end|>\n"
        f"<|im_start|>assistant\n{bad}<|im_end|>\n"
        "<|im_start|>user\n"
        + SPEC_FALLBACK.format(question=QUESTION, choices=CHOICES_TEXT).replace("<image>", VISION)
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert _render(tiny_processor, messages) == expected
    assert traj.turns[0].fallback and "too small" in traj.turns[0].fallback
    # the fallback image is the resized original, in the same frame as turn 1
    assert traj.turns[1].frame_size == traj.turns[0].frame_size == [1148, 868]


def test_turn1_does_not_show_choices() -> None:
    messages = protocol.first_turn_messages(ProtocolConfig.paper(), Image.new("RGB", (64, 64)), QUESTION, CHOICES)
    assert messages[0]["content"][0]["text"] == SPEC_SYSTEM
    assert protocol.message_text(messages[1]) == f"<image>Question: {QUESTION} {SPEC_POST}"


def test_processor_expands_turn_images(tiny_processor) -> None:
    """The rendered turn-2 conversation tokenises with both images expanded to their frame's token counts."""
    messages, traj = _conversation(TURN1)
    inputs = render_inputs(tiny_processor, [messages])
    grid = inputs["image_grid_thw"].tolist()
    assert [[g[2] * 14, g[1] * 14] for g in grid] == [t.frame_size for t in traj.turns]
    image_pad = tiny_processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_pad = int((inputs["input_ids"] == image_pad).sum())
    assert n_pad == sum(t.visual_tokens for t in traj.turns)
    assert "mm_token_type_ids" in inputs


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="box_policy"):
        ProtocolConfig(box_policy="shrink")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_turns"):
        ProtocolConfig(max_turns=0)
    with pytest.raises(ValueError, match="preset"):
        ProtocolConfig.from_preset("nope")
