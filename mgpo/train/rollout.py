"""Token-level pieces of an MGPO rollout: cutting a sampled turn 1, building the turn-2 user message as token ids,
and the loss mask. The protocol itself (parse, validate, map, crop or fall back, the next message, the scored text)
is mgpo.episode.Episode, the same object the engine drives for infer and eval; this module only turns its decisions
into ids.

Mask convention (spec §5): 1 on the model's tokens of both turns, turn 1's closing end-of-turn token included; 0 on
the turn-2 user message with all of its image tokens. Caps (spec §4), as the reference applies them: a turn that hit
its per-turn cap without an end-of-turn token has its LAST token replaced by <|im_end|> (mask 1); a turn 2 cut by the
total cap (the whole response passing max_completion_length) gets mask 0 on all of its tokens and reward 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from mgpo.episode import Episode
from mgpo.grounding import GroundingStep


@dataclass
class Rollout:
    """One sampled rollout: its Episode (the protocol's state) and the token segments with their masks."""

    episode: Episode
    step: GroundingStep | None = None  # what the system did with turn 1
    turn1_ids: list[int] = field(default_factory=list)
    turn1_mask: list[int] = field(default_factory=list)
    turn1_logprobs: list[float | None] = field(default_factory=list)
    user2_ids: list[int] = field(default_factory=list)
    turn2_ids: list[int] = field(default_factory=list)
    turn2_logprobs: list[float | None] = field(default_factory=list)
    turn2_skipped: bool = False  # no room left in the completion budget for the turn-2 message
    turn2_cut: bool = False  # turn 2 ran past the total cap: mask 0, reward 0

    @property
    def original(self) -> Image.Image:
        return self.episode.original

    @property
    def full_view(self) -> Image.Image:
        """Turn 1's image (the pre-resized original)."""
        return self.episode.full_view

    @property
    def view(self) -> Image.Image | None:
        """The turn-2 image: the crop, or the full view on fallback; None before turn 1 is grounded."""
        return self.episode.view if self.step is not None else None

    @property
    def over_total_cap(self) -> bool:
        """The reference's final-EOS mask leaves no turn 2 to score: reward 0."""
        return self.turn2_skipped or self.turn2_cut

    @property
    def cropped(self) -> bool:
        return self.step is not None and self.step.cropped

    @property
    def images(self) -> list[Image.Image]:
        """Every image the sequence shows, in order: what the loss forward pass must see."""
        if self.turn2_skipped or self.view is None:
            return [self.full_view]
        return [self.full_view, self.view]

    def completion(self) -> tuple[list[int], list[int], list[float | None]]:
        """Completion ids, loss mask and sampling logprobs (None where a token was not sampled)."""
        ids = list(self.turn1_ids)
        mask = list(self.turn1_mask)
        logprobs = list(self.turn1_logprobs)
        if not self.turn2_skipped:
            ids += self.user2_ids + self.turn2_ids
            mask += [0] * len(self.user2_ids) + [0 if self.turn2_cut else 1] * len(self.turn2_ids)
            logprobs += [0.0] * len(self.user2_ids) + list(self.turn2_logprobs)
        return ids, mask, logprobs


def finish_turn1(
    ro: Rollout, ids: list[int], logprobs: list[float] | None, tokenizer: Any, eos_ids: list[int], end_of_turn: int
) -> None:
    """Let the episode take its step on turn 1, then cut the sampled tokens after the box block.

    A turn 1 without an end-of-turn token (its cap reached) has its last token replaced by <|im_end|>, mask 1, before
    it is parsed: the reference's rule (spec §4)."""
    ended = bool(ids) and ids[-1] in eos_ids
    content = list(ids[:-1])  # without its end-of-turn token, or without the last token that <|im_end|> replaces
    content_lp: list[float | None] = list(logprobs[: len(content)]) if logprobs is not None else [None] * len(content)
    step = ro.episode.step(tokenizer.decode(content, skip_special_tokens=True))
    if step is None:
        raise RuntimeError("turn 1 answered: the training rollout needs the two-turn protocol (max_turns=2)")
    ro.step = step
    if step.box_model is None:  # no box: the turn stays as sampled
        kept, kept_lp = content, content_lp
    else:
        kept, kept_lp = cut_tokens(content, content_lp, step.kept_text, tokenizer)
    if ended and len(kept) == len(content):
        closer, closer_lp = ids[-1], (logprobs[len(content)] if logprobs is not None else None)
    else:
        closer, closer_lp = end_of_turn, None
    ro.turn1_ids = [*kept, closer]
    ro.turn1_mask = [1] * (len(kept) + 1)
    ro.turn1_logprobs = [*kept_lp, closer_lp]


def finish_turn2(
    ro: Rollout,
    ids: list[int],
    logprobs: list | None,
    room: int,
    eos_ids: list[int],
    end_of_turn: int,
    tokenizer: Any,
) -> None:
    """Apply the caps to a sampled turn 2 (spec §4): past the ``room`` the total cap leaves, it is cut (mask 0,
    reward 0); stopped by the per-turn cap short of that, its last token becomes <|im_end|> (mask 1). The episode
    then takes its final step, so its ``response`` is the text the reward scores."""
    ids = list(ids)
    lps: list[float | None] = list(logprobs) if logprobs is not None else [None] * len(ids)
    ended = bool(ids) and ids[-1] in eos_ids
    if len(ids) > room or (not ended and len(ids) >= room):
        ro.turn2_cut = True
        ids, lps = ids[:room], lps[:room]
    elif not ended and ids:
        ids[-1], lps[-1] = end_of_turn, None
    ro.turn2_ids, ro.turn2_logprobs = ids, lps
    ro.episode.step(tokenizer.decode(ids, skip_special_tokens=True))


def cut_tokens(
    ids: list[int], logprobs: list[float | None], kept_text: str, tokenizer: Any
) -> tuple[list[int], list[float | None]]:
    """Keep the sampled tokens that spell ``kept_text``; re-encode only a token that straddles its end."""
    lo, hi = 0, len(ids)  # largest k whose decoded prefix is a prefix of kept_text (binary search)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if kept_text.startswith(tokenizer.decode(ids[:mid], skip_special_tokens=True)):
            lo = mid
        else:
            hi = mid - 1
    done = tokenizer.decode(ids[:lo], skip_special_tokens=True)
    tail = kept_text[len(done) :]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    return [*ids[:lo], *tail_ids], [*logprobs[:lo], *([None] * len(tail_ids))]


def followup_text(processor: Any, ro: Rollout, end_of_turn_text: str) -> str:
    """The text between turn 1's closing token and turn 2: the chat template's rendering of the episode's turn-2 user
    message (crop or fallback) and the generation prompt, exactly as infer renders the whole conversation."""
    assert ro.step is not None
    *head, follow = ro.episode.messages  # [..turn 1, turn 1 as kept, the turn-2 user message]
    head_text = processor.apply_chat_template(head, tokenize=False, add_generation_prompt=False)
    full_text = processor.apply_chat_template([*head, follow], tokenize=False, add_generation_prompt=True)
    if not full_text.startswith(head_text):
        # Qwen3.5's template renders the last turn's (empty) think block only while no user turn follows it, so
        # the prefix changes; what follows turn 1's closing token is still the same: the turn-2 user message
        # (closed by the last end-of-turn token) and the generation prompt
        last = full_text.rfind(end_of_turn_text)
        closing = full_text.rfind(end_of_turn_text, 0, last) if last > 0 else -1
        if closing < 0:
            raise RuntimeError("cannot find turn 1's end in the chat template's rendering of the turn-2 message")
        return full_text[closing + len(end_of_turn_text) :]
    closing = head_text.rfind(end_of_turn_text)
    trailing = head_text[closing + len(end_of_turn_text) :] if closing >= 0 else ""
    return trailing + full_text[len(head_text) :]


def build_user2(processor: Any, ro: Rollout, end_of_turn_text: str) -> None:
    """Tokenise the turn-2 user message with the processor, so its image placeholder is expanded to the crop's size."""
    assert ro.view is not None
    text = followup_text(processor, ro, end_of_turn_text)
    out = processor(text=[text], images=[ro.view], return_tensors=None)
    ids = out["input_ids"][0]
    ro.user2_ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
