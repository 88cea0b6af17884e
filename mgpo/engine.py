"""The multi-turn grounding loop, written once for infer, eval and train.

Runs a batch turn by turn: every live sample's turn in one backend call, then the system's step for each (parse the
box, validate, map, crop the ORIGINAL image, build the next user message). A sample stops once it has answered (from
turn 2 on) or reached ``max_turns``. The engine knows nothing about tokenisation; backends do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo import grounding, imaging, protocol
from mgpo.answers import last_boxed
from mgpo.backends.base import Backend, Generation, Request
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig
from mgpo.scoring import score_response
from mgpo.types import Sample, Trajectory, Turn

MAX_LOAD_THREADS = 8
NO_BOX = "no box found (needs a ```json block with bbox_2d [x1, y1, x2, y2] and a label)"


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
        return self.box_original is not None


def ground(text: str, frame: tuple[int, int], region: list[int], cfg: ProtocolConfig) -> GroundingStep:
    """Parse, validate and map one turn's box (spec §2). Pure: no images, no model."""
    parsed = grounding.parse_box(text, lenient=cfg.lenient)
    if parsed is None:
        return GroundingStep(text, fallback=NO_BOX)
    step = GroundingStep(text[: parsed.end], box_model=parsed.box.as_list(), notes=list(parsed.notes))
    box = grounding.to_frame_pixels(parsed.box, frame, cfg.coords)
    reason = grounding.check_box(box, frame)
    if reason and cfg.box_policy == "clamp":
        clamped = grounding.clamp_box(box, frame)
        if clamped is not None:
            step.notes.append(f"clamped: {reason}")
            box, reason = clamped, None
    if reason:
        step.fallback = reason
        return step
    step.box_original = grounding.map_to_original(box, frame, region)
    if grounding.crop_is_degenerate(step.box_original):
        step.notes.append(
            f"crop {step.box_original} is {grounding.CROP_GUARD_ASPECT}:1 or more: showing the whole image"
        )
        step.box_original = list(region)
    return step


@dataclass
class Episode:
    """One sample in flight: its original image, the conversation so far, and what is shown now."""

    index: int
    sample: Sample
    trajectory: Trajectory
    original: Image.Image | None = None
    full_view: Image.Image | None = None  # the pre-resized original: turn 1's image and the fallback image
    view: Image.Image | None = None
    region: list[int] = field(default_factory=list)  # original-pixel region the current view shows
    messages: list[dict[str, Any]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    done: bool = False
    first_prompt_tokens: int | None = None  # where the response starts, when the backend counts tokens
    output_tokens: int | None = 0  # the model's tokens so far; None once a turn went uncounted
    cut: bool = False  # the response passed max_response_tokens: its last turn is cut and scores 0


class Engine:
    """Runs samples through a backend under one protocol configuration."""

    def __init__(self, backend: Backend, config: ProtocolConfig | None = None, max_image_pixels: int | None = None):
        self.backend = backend
        self.config = config or ProtocolConfig.paper()
        self.max_image_pixels = max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS

    def run(
        self, samples: Sequence[Sample], on_done: Callable[[int, Trajectory], None] | None = None
    ) -> list[Trajectory]:
        """Run every sample to completion; ``on_done(i, trajectory)`` fires as each one finishes."""
        episodes = self._start_all(samples)
        finished: set[int] = set()

        def finish(ep: Episode) -> None:
            if ep.index in finished:
                return
            finished.add(ep.index)
            self._score(ep)
            ep.original = ep.full_view = ep.view = None  # free the pixels as soon as a sample is done
            if on_done:
                on_done(ep.index, ep.trajectory)

        for ep in episodes:
            if ep.done:
                finish(ep)
        for turn in range(self.config.max_turns):
            live = [ep for ep in episodes if not ep.done]
            if not live:
                break
            generations = self._generate(live, turn)
            for ep, gen in zip(live, generations, strict=True):
                try:
                    self._advance(ep, turn, gen)
                except Exception as exc:  # a bug or odd image on one sample must not sink the batch
                    ep.trajectory.error = f"internal error on turn {turn + 1}: {_one_line(exc)}"
                    ep.trajectory.error_kind = "internal"
                    ep.done = True
                if ep.done:
                    finish(ep)
        for ep in episodes:
            ep.done = True
            finish(ep)
        return [ep.trajectory for ep in episodes]

    def run_one(self, sample: Sample) -> Trajectory:
        return self.run([sample])[0]

    # -----------------------------------------------------------------------------------------------------------

    def _start_all(self, samples: Sequence[Sample]) -> list[Episode]:
        """Load and pre-resize every image; in threads, since Pillow decodes without holding the GIL (4K PNG ~0.3 s)."""
        workers = min(len(samples), os.cpu_count() or 1, MAX_LOAD_THREADS)
        if workers <= 1:
            return [self._start(i, s) for i, s in enumerate(samples)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self._start, range(len(samples)), samples))

    def _start(self, index: int, sample: Sample) -> Episode:
        cfg = self.config
        traj = Trajectory(
            question=sample.question,
            choices=list(sample.choices),
            ground_truth=sample.ground_truth,
            id=sample.id,
            image_path=str(sample.image) if isinstance(sample.image, str | Path) else None,
            gt_box=sample.gt_box,
            system_prompt=None if cfg.single_turn else protocol.SYSTEM_PROMPT,
            protocol=cfg.to_dict(),
            meta=dict(sample.meta),
        )
        ep = Episode(index, sample, traj)
        try:
            ep.original = imaging.load_image(sample.image, self.max_image_pixels, cfg.image_mode)
            ep.full_view = imaging.pre_resize(ep.original, cfg.min_pixels, cfg.max_pixels, cfg.resampling)
            imaging.check_shape(ep.full_view.size)
        except MgpoError as exc:
            traj.error, traj.error_kind = str(exc), "input"
            ep.done = True
            return ep
        ep.view = ep.full_view
        ep.region = [0, 0, *ep.original.size]
        ep.messages = protocol.first_turn_messages(cfg, ep.view, sample.question, list(sample.choices))
        return ep

    def _generate(self, live: list[Episode], turn: int) -> list[Generation]:
        keys = [ep.sample.meta.get("seed_key", ep.sample.id) for ep in live]  # per-sample sampling seeds
        requests = [
            Request(ep.messages, ep.index, turn, ep.sample.id, self._turn_budget(ep), key)
            for ep, key in zip(live, keys, strict=True)
        ]
        try:
            generations = self.backend.generate(requests)
            if len(generations) != len(requests):
                raise RuntimeError(f"backend returned {len(generations)} results for {len(requests)} requests")
            return generations
        except MgpoError as exc:
            return [Generation("", error=str(exc)) for _ in live]
        except Exception as exc:
            return [Generation("", error=f"{self.backend.name} backend failed: {_one_line(exc)}") for _ in live]

    def _turn_budget(self, ep: Episode) -> int | None:
        """The per-turn cap, lowered so a turn never runs far past the total cap: the model's earlier tokens alone
        bound what the response already holds from below, so nothing that could still fit is cut off."""
        cap, total = self.config.max_new_tokens, self.config.max_response_tokens
        if not total or not ep.output_tokens:
            return cap
        per_turn = cap or self.backend.default_max_new_tokens()
        return max(1, min(per_turn, total - ep.output_tokens))

    def _count(self, ep: Episode, turn: int, gen: Generation) -> None:
        """Track the response's length; mark it cut when it passes the total cap (spec §4)."""
        if turn == 0:
            ep.first_prompt_tokens = gen.prompt_tokens
        if gen.output_tokens is None or ep.output_tokens is None:
            ep.output_tokens = None
            return
        ep.output_tokens += gen.output_tokens
        total = self.config.max_response_tokens
        if total and turn >= 1 and gen.prompt_tokens is not None and ep.first_prompt_tokens is not None:
            # the response = everything after the first prompt: earlier turns, the later user messages, this turn
            ep.cut = gen.prompt_tokens - ep.first_prompt_tokens + gen.output_tokens > total

    def _frame(self, image: Image.Image) -> tuple[int, int]:
        return imaging.model_frame(image.size, self.config.processor_min_pixels, self.config.processor_max_pixels)

    def _advance(self, ep: Episode, turn: int, gen: Generation) -> None:
        cfg = self.config
        assert ep.view is not None and ep.original is not None
        frame = self._frame(ep.view)
        record = Turn(
            prompt=protocol.message_text(ep.messages[-1]),
            output=gen.text,
            image_size=list(ep.original.size),
            frame_size=list(frame),
            shown_box=list(ep.region),
            visual_tokens=imaging.visual_tokens(frame),
            output_tokens=gen.output_tokens or 0,
            seconds=round(gen.seconds, 4),
        )
        ep.trajectory.turns.append(record)
        if gen.error:
            ep.trajectory.error, ep.trajectory.error_kind = gen.error, "backend"
            ep.done = True
            return
        self._count(ep, turn, gen)
        final = cfg.single_turn or turn == cfg.max_turns - 1
        if final or (turn >= 1 and last_boxed(gen.text) is not None):
            ep.kept.append(gen.text)
            ep.done = True
            return
        step = ground(gen.text, frame, ep.region, cfg)
        record.box_model, record.box_original, record.fallback = step.box_model, step.box_original, step.fallback
        record.parse_note = "; ".join(step.notes) or None
        ep.kept.append(step.kept_text)
        if step.cropped:
            assert step.box_original is not None
            piece = imaging.crop(ep.original, step.box_original)
            ep.view = imaging.resize_crop(piece, cfg.crop_min_pixels, cfg.crop_max_pixels, cfg.resampling)
            ep.region = step.box_original
        else:
            ep.view = ep.full_view
            ep.region = [0, 0, *ep.original.size]
        next_final = turn + 1 == cfg.max_turns - 1
        ep.messages = [
            *ep.messages,
            protocol.assistant_message(step.kept_text),
            protocol.followup_message(ep.view, ep.sample.question, list(ep.sample.choices), step.cropped, next_final),
        ]

    def _score(self, ep: Episode) -> None:
        traj = ep.trajectory
        score = score_response(ep.kept, traj.ground_truth, traj.choices, self.config, cut=ep.cut)
        traj.answer, traj.answer_source = score.answer, score.source if ep.kept else None
        traj.correct = score.correct if traj.error is None else (False if traj.ground_truth else None)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
