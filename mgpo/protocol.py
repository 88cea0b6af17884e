"""The MGPO protocol: its texts, its settings, and the chat messages of each turn.

``ProtocolConfig.paper()`` reproduces the reference exactly (spec: shared/research/mgpo-protocol.md); every other
behaviour is a named option. This is the only place the prompts live: infer, eval and train all build their
conversations here. Messages use the processor-agnostic content-part form
``{"role": ..., "content": [{"type": "image", "image": PIL}, {"type": "text", "text": ...}]}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from PIL import Image

from mgpo.answers import LETTERS

SYSTEM_PROMPT = (
    "You are a helpful assistant. Given an image and one question. First, identify the coordinates of the key image "
    "area relevant to solving the problem. Append the coordinates in JSON format at the end of your response and "
    "stop. This will trigger cropping of the corresponding area in the original image and enlarge it for improved "
    "clarity. Once the enlarged image is available, provide the final answer (A, B, C, D, or E) enclosed within "
    "\\boxed{}."
)
GROUNDING_POST_PROMPT = "Out the coordinates of the key image area relevant to the problem in JSON format."  # sic
CROP_HEADER = "Based on the provided coordinates, return the sub-image:\n"
FALLBACK_HEADER = "Not providing correct coordinates or invalid coordinate values, return the original image:\n"
CROP_INSTRUCTION = (
    "Carefully analyze both the original image and the enlarged sub-image to solve the question step by step. If "
    "the sub-image does not provide sufficient information, refer to the original image to find the solution. "
    "Present your reasoning clearly, and provide the final answer (A, B, C, D, or E) enclosed within \\boxed{}."
)
FALLBACK_INSTRUCTION = (
    "Carefully analyze the original image to solve the question step by step. Present your reasoning clearly, and "
    "provide the final answer (A, B, C, D, or E) enclosed within \\boxed{}."
)
# Only used when max_turns > 2 (iterative zoom, not in the paper): lets an intermediate turn ask for a closer look.
ZOOM_INSTRUCTION = (
    " If the image is still not clear enough to answer, instead output the coordinates of the key area within the "
    "latest image in JSON format."
)
CHOICES_HEADER = "The choices are listed below:\n"
# Single-turn baseline prompt (GRPO baseline, --ablate): the question, the choices and the answer format.
DIRECT_INSTRUCTION = (
    "Solve the question step by step. Present your reasoning clearly, and provide the final answer "
    "(A, B, C, D, or E) enclosed within \\boxed{}."
)
IMAGE_MARK = "<image>"  # how an image is written in Turn.prompt

PAPER_PIXELS = (200_704, 1_003_520)  # 256*28*28 .. 1280*28*28
PROCESSOR_PIXELS = (3_136, 12_845_056)  # the Qwen2.5-VL processor's own defaults: rounding only, after pre-resize

BoxPolicy = Literal["reject", "clamp"]
Coords = Literal["resized-pixels", "normalized-1000"]
Parsing = Literal["strict", "lenient"]
Scoring = Literal["paper", "letter"]
ImageMode = Literal["reference", "upright"]


@dataclass(frozen=True)
class ProtocolConfig:
    """Every knob of the grounding protocol. Defaults are the paper's."""

    preset: str = "paper"
    max_turns: int = 2
    min_pixels: int = PAPER_PIXELS[0]
    max_pixels: int = PAPER_PIXELS[1]
    crop_min_pixels: int = PAPER_PIXELS[0]
    crop_max_pixels: int = PAPER_PIXELS[1]
    processor_min_pixels: int = PROCESSOR_PIXELS[0]
    processor_max_pixels: int = PROCESSOR_PIXELS[1]
    resampling: str = "nearest"
    box_policy: BoxPolicy = "reject"
    coords: Coords | None = None  # None: the model family's convention (resized-pixels for Qwen2.5-VL)
    parsing: Parsing = "strict"
    max_new_tokens: int | None = None  # None: the checkpoint's generation_config cap, else 8192 (paper)
    # the whole response (turn 1 + turn-2 message with its image tokens + turn 2) past this many tokens: the last
    # turn is cut and scores 0, as the reference's final-EOS mask does (spec §4); None or 0: no total cap
    max_response_tokens: int | None = 12192
    scoring: Scoring = "paper"  # paper: mathruler on the final turn (spec §5); letter: mgpo.answers' letter reader
    answer_fallbacks: bool = True  # letter scoring only: strict fallbacks when there is no \boxed{} (mgpo.answers)
    # reference: Image.open().convert('RGB') as the reference does (no EXIF rotation, alpha dropped);
    # upright: EXIF rotation applied and alpha composited on white, friendlier for users' photos
    image_mode: ImageMode = "reference"
    single_turn: bool = False  # direct-answer baseline: one turn, no grounding
    # the model family (mgpo.families): None or 'auto' until resolved from the checkpoint; it sets the frame unit
    # (the processor's patch * merge size, px) and the coordinate convention unless coords is given
    model_family: str | None = None
    frame_unit: int | None = None  # None: the family's

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
        if self.max_response_tokens is not None and self.max_response_tokens < 0:
            raise ValueError(f"max_response_tokens must be >= 0 (0: no total cap), got {self.max_response_tokens}")
        if not (0 < self.min_pixels <= self.max_pixels and 0 < self.crop_min_pixels <= self.crop_max_pixels):
            raise ValueError("pixel limits need 0 < min_pixels <= max_pixels")
        for name, value, allowed in (
            ("box_policy", self.box_policy, ("reject", "clamp")),
            ("coords", self.coords, ("resized-pixels", "normalized-1000", None)),
            ("parsing", self.parsing, ("strict", "lenient")),
            ("scoring", self.scoring, ("paper", "letter")),
            ("image_mode", self.image_mode, ("reference", "upright")),
            ("resampling", self.resampling, ("nearest", "bilinear", "bicubic", "lanczos", "box")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(a for a in allowed if a)}; got {value!r}")
        if self.model_family not in (None, "auto"):
            from mgpo.families import get_family

            get_family(self.model_family)  # an unknown family is one line naming the choices
        if self.frame_unit is not None and self.frame_unit <= 0:
            raise ValueError(f"frame_unit must be > 0, got {self.frame_unit}")

    @classmethod
    def paper(cls, **overrides: Any) -> ProtocolConfig:
        """The reference protocol (spec §1-§4), with optional named deviations."""
        return cls(**overrides)

    @classmethod
    def direct(cls, **overrides: Any) -> ProtocolConfig:
        """The single-turn, direct-answer baseline on the same image pipeline."""
        return cls(**{"preset": "direct", "single_turn": True, "max_turns": 1, **overrides})

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ProtocolConfig:
        presets = {"paper": cls.paper, "direct": cls.direct}
        if name not in presets:
            raise ValueError(f"unknown protocol preset {name!r}; use one of: {', '.join(presets)}")
        return presets[name](**{k: v for k, v in overrides.items() if v is not None})

    def with_options(self, **overrides: Any) -> ProtocolConfig:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in known and v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def lenient(self) -> bool:
        return self.parsing == "lenient"

    @property
    def family(self):
        """The model family (mgpo.families.ModelFamily); Qwen2.5-VL while unresolved."""
        from mgpo.families import get_family

        return get_family(None if self.model_family in (None, "auto") else self.model_family)

    @property
    def box_coords(self) -> str:
        """The coordinate convention boxes are read in: --coords, else the model family's."""
        return self.coords or self.family.coords

    @property
    def unit(self) -> int:
        """The frame unit in pixels: frames are multiples of it and one visual token covers a unit x unit cell."""
        return self.frame_unit or self.family.frame_unit

    @property
    def view_pixels(self) -> tuple[int, int]:
        """(min_pixels, max_pixels): the pre-resize range a loaded image must survive (imaging.check_view)."""
        return self.min_pixels, self.max_pixels


# ---------------------------------------------------------------------------------------------------------------
# Texts


def question_line(question: str) -> str:
    """'Question: {q}' with a period added unless q already ends in '.', '?', '!' or \".'\"."""
    q = question.strip()
    if not q.endswith((".", "?", "!", ".'")):
        q += "."
    return f"Question: {q}"


def choices_block(choices: list[str]) -> str:
    """MME-RealWorld-style options: a header then '(A) ...' lines, ending with a newline; '' without options."""
    if not choices:
        return ""
    return CHOICES_HEADER + "".join(f"({LETTERS[i]}) {c}\n" for i, c in enumerate(choices))


def first_turn_text(question: str) -> str:
    return f"{question_line(question)} {GROUNDING_POST_PROMPT}"


def followup_parts(question: str, choices: list[str], cropped: bool, final: bool) -> tuple[str, str]:
    """Text before and after the image of a later user turn (crop, or the original on fallback)."""
    header = CROP_HEADER if cropped else FALLBACK_HEADER
    instruction = CROP_INSTRUCTION if cropped else FALLBACK_INSTRUCTION
    if not final:
        instruction += ZOOM_INSTRUCTION
    return header, f"\nQuestion: {question.strip()} {choices_block(choices)}{instruction}"


def direct_text(question: str, choices: list[str]) -> str:
    return f"{question_line(question)} {choices_block(choices)}{DIRECT_INSTRUCTION}"


# ---------------------------------------------------------------------------------------------------------------
# Messages


def system_message() -> dict[str, Any]:
    return {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}


def user_message(image: Image.Image, before: str, after: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if before:
        parts.append({"type": "text", "text": before})
    parts.append({"type": "image", "image": image})
    if after:
        parts.append({"type": "text", "text": after})
    return {"role": "user", "content": parts}


def assistant_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def first_turn_messages(cfg: ProtocolConfig, image: Image.Image, question: str, choices: list[str]) -> list[dict]:
    """System prompt and turn-1 user message (grounding), or the direct prompt in single-turn mode."""
    if cfg.single_turn:
        return [user_message(image, "", direct_text(question, choices))]
    return [system_message(), user_message(image, "", first_turn_text(question))]


def followup_message(image: Image.Image, question: str, choices: list[str], cropped: bool, final: bool) -> dict:
    before, after = followup_parts(question, choices, cropped, final)
    return user_message(image, before, after)


def message_text(message: dict[str, Any]) -> str:
    """A message's text with each image written as <image>: what Turn.prompt records."""
    out = []
    for part in message["content"]:
        out.append(IMAGE_MARK if part["type"] == "image" else part["text"])
    return "".join(out)
