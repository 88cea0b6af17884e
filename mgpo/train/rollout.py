"""Token-level pieces of an MGPO rollout: cutting a sampled turn 1, building the turn-2 user message as token ids,
and the loss mask. The protocol decisions themselves (parse, validate, map, crop, prompt texts) are the engine's
(mgpo.engine.ground, mgpo.protocol, mgpo.imaging); this module only turns them into ids.

Mask convention (spec §5): 1 on the model's tokens of both turns, turn 1's closing end-of-turn token included; 0 on
the turn-2 user message with all of its image tokens. Caps (spec §4), as the reference applies them: a turn that hit
its per-turn cap without an end-of-turn token has its LAST token replaced by <|im_end|> (mask 1); a turn 2 cut by the
total cap (the whole response passing max_completion_length) gets mask 0 on all of its tokens and reward 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from mgpo import imaging, protocol
from mgpo.engine import GroundingStep, ground
from mgpo.protocol import ProtocolConfig


@dataclass
class Episode:
    """One rollout's state: the images, the protocol's decisions and the token segments with their masks."""

    original: Image.Image
    full_view: Image.Image  # pre-resized original: turn 1's image and the fallback image
    question: str
    choices: list[str]
    messages: list[dict[str, Any]] = field(default_factory=list)  # turn-1 prompt messages
    step: GroundingStep | None = None
    view: Image.Image | None = None  # the turn-2 image: the crop, or full_view on fallback
    turn1_ids: list[int] = field(default_factory=list)
    turn1_mask: list[int] = field(default_factory=list)
    turn1_logprobs: list[float | None] = field(default_factory=list)
    user2_ids: list[int] = field(default_factory=list)
    turn2_ids: list[int] = field(default_factory=list)
    turn2_logprobs: list[float | None] = field(default_factory=list)
    turn2_skipped: bool = False  # no room left in the completion budget for the turn-2 message
    turn2_cut: bool = False  # turn 2 ran past the total cap: mask 0, reward 0

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


def start_episode(original: Image.Image, question: str, choices: list[str], cfg: ProtocolConfig) -> Episode:
    """Pre-resize the original as the protocol does and build the turn-1 messages."""
    full_view = imaging.pre_resize(original, cfg.min_pixels, cfg.max_pixels, cfg.resampling)
    imaging.check_shape(full_view.size)
    ep = Episode(original, full_view, question, list(choices))
    ep.messages = protocol.first_turn_messages(cfg, full_view, question, list(choices))
    return ep


def model_frame(image: Image.Image, cfg: ProtocolConfig) -> tuple[int, int]:
    return imaging.model_frame(image.size, cfg.processor_min_pixels, cfg.processor_max_pixels)


def finish_turn1(
    ep: Episode,
    ids: list[int],
    logprobs: list[float] | None,
    tokenizer: Any,
    eos_ids: list[int],
    end_of_turn: int,
    cfg: ProtocolConfig,
) -> None:
    """Ground turn 1 with the engine's rules, cut its sampled tokens after the box block, and pick the turn-2 view.

    A turn 1 without an end-of-turn token (its cap reached) has its last token replaced by <|im_end|>, mask 1, before
    it is parsed: the reference's rule (spec §4)."""
    ended = bool(ids) and ids[-1] in eos_ids
    content = list(ids[:-1])  # without its end-of-turn token, or without the last token that <|im_end|> replaces
    content_lp: list[float | None] = list(logprobs[: len(content)]) if logprobs is not None else [None] * len(content)
    text = tokenizer.decode(content, skip_special_tokens=True)
    frame = model_frame(ep.full_view, cfg)
    step = ground(text, frame, [0, 0, *ep.original.size], cfg)
    ep.step = step
    if step.box_model is None:  # no box: the turn stays as sampled
        kept, kept_lp = content, content_lp
    else:
        kept, kept_lp = cut_tokens(content, content_lp, step.kept_text, tokenizer)
    if ended and len(kept) == len(content):
        closer, closer_lp = ids[-1], (logprobs[len(content)] if logprobs is not None else None)
    else:
        closer, closer_lp = end_of_turn, None
    ep.turn1_ids = [*kept, closer]
    ep.turn1_mask = [1] * (len(kept) + 1)
    ep.turn1_logprobs = [*kept_lp, closer_lp]
    if step.cropped:
        assert step.box_original is not None
        piece = imaging.crop(ep.original, step.box_original)
        ep.view = imaging.resize_crop(piece, cfg.crop_min_pixels, cfg.crop_max_pixels, cfg.resampling)
    else:
        ep.view = ep.full_view


def finish_turn2(ep: Episode, ids: list[int], logprobs: list | None, room: int, eos_ids: list[int], end_of_turn: int):
    """Apply the caps to a sampled turn 2 (spec §4): past the ``room`` the total cap leaves, it is cut (mask 0,
    reward 0); stopped by the per-turn cap short of that, its last token becomes <|im_end|> (mask 1)."""
    ids = list(ids)
    lps: list[float | None] = list(logprobs) if logprobs is not None else [None] * len(ids)
    ended = bool(ids) and ids[-1] in eos_ids
    if len(ids) > room or (not ended and len(ids) >= room):
        ep.turn2_cut = True
        ids, lps = ids[:room], lps[:room]
    elif not ended and ids:
        ids[-1], lps[-1] = end_of_turn, None
    ep.turn2_ids, ep.turn2_logprobs = ids, lps


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


def followup_text(processor: Any, ep: Episode, end_of_turn_text: str) -> str:
    """The text between turn 1's closing token and turn 2: the chat template's rendering of the turn-2 user message
    (crop or fallback) and the generation prompt, exactly as infer renders the whole conversation."""
    assert ep.step is not None and ep.view is not None
    head = [*ep.messages, protocol.assistant_message(ep.step.kept_text)]
    follow = protocol.followup_message(ep.view, ep.question, ep.choices, ep.step.cropped, final=True)
    head_text = processor.apply_chat_template(head, tokenize=False, add_generation_prompt=False)
    full_text = processor.apply_chat_template([*head, follow], tokenize=False, add_generation_prompt=True)
    if not full_text.startswith(head_text):
        raise RuntimeError("the chat template is not prefix-preserving; MGPO needs one (as Qwen2.5-VL's is)")
    closing = head_text.rfind(end_of_turn_text)
    trailing = head_text[closing + len(end_of_turn_text) :] if closing >= 0 else ""
    return trailing + full_text[len(head_text) :]


def build_user2(processor: Any, ep: Episode, end_of_turn_text: str) -> None:
    """Tokenise the turn-2 user message with the processor, so its image placeholder is expanded to the crop's size."""
    assert ep.view is not None
    text = followup_text(processor, ep, end_of_turn_text)
    out = processor(text=[text], images=[ep.view], return_tensors=None)
    ids = out["input_ids"][0]
    ep.user2_ids = list(ids.tolist() if hasattr(ids, "tolist") else ids)
