"""Reward functions in TRL's signature. The default is the paper's: 1.0 when the last ``\\boxed{}`` of the whole
response names the ground-truth option, else 0.0, read by the same extractor eval uses (mgpo.answers).

Optional extras (off by default, not in the paper): a format reward and a grounding reward (IoU of the turn-1 box,
mapped to original pixels, with the data's ground-truth box where it has one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mgpo.answers import extract_answer, is_correct, last_boxed
from mgpo.grounding import iou

REWARDS = ("accuracy", "format", "grounding")


def response_text(completion: Any) -> str:
    """The model's own text of a completion: every assistant turn, joined as the engine scores them."""
    if isinstance(completion, str):
        return completion
    texts = []
    for message in completion:
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.append("".join(p.get("text", "") for p in content if p.get("type") == "text"))
    return "\n".join(texts)


def accuracy_reward(completions: list, answer: list[str], choices: list[list[str]] | None = None, **_: Any):
    """Binary: the last \\boxed{} (no fallbacks, as in the paper) equals the ground-truth letter."""
    out = []
    for i, completion in enumerate(completions):
        opts = choices[i] if choices is not None else None
        letter, _source = extract_answer(response_text(completion), opts or None, fallbacks=False)
        out.append(1.0 if is_correct(letter, answer[i]) else 0.0)
    return out


def format_reward(completions: list, mgpo_box_valid: list[bool] | None = None, **_: Any):
    """0.5 for a valid turn-1 box (multi-turn only) plus 0.5 for a final \\boxed{} answer."""
    out = []
    for i, completion in enumerate(completions):
        score = 0.5 if last_boxed(response_text(completion)) is not None else 0.0
        if mgpo_box_valid is not None and mgpo_box_valid[i]:
            score += 0.5
        out.append(score)
    return out


def grounding_reward(completions: list, gt_box: list | None = None, mgpo_box_original: list | None = None, **_: Any):
    """IoU of the turn-1 box with the ground-truth box; None (ignored by TRL) where the data has no box."""
    out: list[float | None] = []
    for i in range(len(completions)):
        gt = gt_box[i] if gt_box is not None else None
        if not gt:
            out.append(None)
            continue
        box = mgpo_box_original[i] if mgpo_box_original is not None else None
        out.append(iou(box, gt) if box else 0.0)
    return out


def reward_functions(names: list[str]) -> list[Callable[..., list]]:
    """The reward callables for the given names, in order."""
    table = {"accuracy": accuracy_reward, "format": format_reward, "grounding": grounding_reward}
    unknown = [n for n in names if n not in table]
    if unknown:
        from mgpo.errors import MgpoError

        raise MgpoError(f"unknown reward(s) {', '.join(unknown)}; use any of: {', '.join(REWARDS)}")
    return [table[n] for n in names]
