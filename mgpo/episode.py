"""One sample's conversation under the protocol, written once for infer, eval and train.

An ``Episode`` starts from an already loaded original image, a question and its choices: it pre-resizes the original
and builds the turn-1 messages. ``step(text)`` is the system's move after each assistant turn: it parses, validates
and maps the box (mgpo.grounding.ground), crops the ORIGINAL image or falls back to the whole one, and builds the next
user message; after the final turn (or an answer from turn 2 on) the episode is done and ``response`` is the text that
is scored. The engine's batch loop and the trainer's rollout both drive it; neither knows about tokens here, and the
episode knows nothing about backends or token ids.
"""

from __future__ import annotations

import copy
from typing import Any

from PIL import Image

from mgpo import imaging, protocol
from mgpo.answers import last_boxed
from mgpo.grounding import GroundingStep, ground
from mgpo.protocol import ProtocolConfig


def crop_original(original: Image.Image, box: list[int]) -> Image.Image:
    """The protocol's crop: ``box`` (original pixels) cut from the ORIGINAL image, never from a resized view. The
    one place mgpo cuts an image, so the crop shown to the model and the one saved or displayed are the same."""
    return imaging.crop(original, box)


class Episode:
    """One sample in flight: its images, the conversation so far and the text kept from each assistant turn."""

    def __init__(self, original: Image.Image, question: str, choices: list[str], cfg: ProtocolConfig):
        self.cfg = cfg
        self.original = original
        self.question = question
        self.choices = list(choices)
        # the pre-resized original: turn 1's image and the fallback image
        self.full_view = imaging.pre_resize(original, cfg.min_pixels, cfg.max_pixels, cfg.resampling)
        imaging.check_view(original.size, cfg.min_pixels, cfg.max_pixels)  # the load check, so the two agree
        self.view = self.full_view  # the image the next turn is shown
        self.region = [0, 0, *original.size]  # original-pixel region the current view shows
        self.messages: list[dict[str, Any]] = protocol.first_turn_messages(cfg, self.view, question, self.choices)
        self.turn = 0  # 0-based index of the next assistant turn
        self.kept: list[str] = []  # each assistant turn as it stays in the conversation
        self.steps: list[GroundingStep | None] = []  # per turn: the grounding, or None for an answering turn
        self.done = False

    @property
    def frame(self) -> tuple[int, int]:
        """The model frame of the current view: the pixels the model's coordinates live in (spec §3)."""
        cfg = self.cfg
        return imaging.model_frame(self.view.size, cfg.processor_min_pixels, cfg.processor_max_pixels, cfg.unit)

    @property
    def response(self) -> str:
        """The scored text: the last kept assistant turn (scoring reads only the final turn, spec §5)."""
        return self.kept[-1] if self.kept else ""

    @property
    def is_final_turn(self) -> bool:
        """The next turn must answer: single-turn mode, or the last of ``max_turns``."""
        return self.cfg.single_turn or self.turn == self.cfg.max_turns - 1

    def step(self, text: str) -> GroundingStep | None:
        """Take one assistant turn's text and do the system's move; None when the turn answers and the episode ends.

        Otherwise the returned step says what happened to the box, and ``view``, ``region`` and ``messages`` are
        the next turn's (the crop, or the whole image on fallback)."""
        if self.done:
            raise RuntimeError("the episode is done; no further turn to take")
        cfg = self.cfg
        if self.is_final_turn or (self.turn >= 1 and last_boxed(text) is not None):
            self.kept.append(text)
            self.steps.append(None)
            self.turn += 1
            self.done = True
            return None
        step = ground(text, self.frame, self.region, cfg)
        self.kept.append(step.kept_text)
        self.steps.append(step)
        if step.cropped:
            assert step.box_original is not None
            piece = crop_original(self.original, step.box_original)
            self.view = imaging.resize_crop(piece, cfg.crop_min_pixels, cfg.crop_max_pixels, cfg.resampling)
            self.region = list(step.box_original)
        else:
            self.view = self.full_view
            self.region = [0, 0, *self.original.size]
        self.turn += 1
        follow = protocol.followup_message(self.view, self.question, self.choices, step.cropped, self.is_final_turn)
        self.messages = [*self.messages, protocol.assistant_message(step.kept_text), follow]
        return step

    def fork(self) -> Episode:
        """Another episode from the same start (the same images and turn-1 prompt), with its own conversation: what
        a group of rollouts of one prompt needs, without pre-resizing the original again."""
        if self.turn:
            raise RuntimeError("fork an episode before its first step")
        twin = copy.copy(self)
        twin.kept, twin.steps = [], []
        return twin

    def release(self) -> None:
        """Drop the pixels once the episode is finished: a batch keeps only the samples still in flight in memory."""
        self.original = self.full_view = self.view = None  # type: ignore[assignment]
