"""Reward functions in TRL's signature. The default is the paper's (spec §5): mathruler's ``grade_answer`` on the
``\boxed{}`` of the final turn, 1.0 or 0.0, by the same function that scores infer and eval (mgpo.scoring); a turn 2
cut by the total cap gets 0.

Optional extras (off by default, not in the paper): a format reward and a grounding reward (IoU of the turn-1 box,
mapped to original pixels, with the data's ground-truth box where it has one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mgpo.answers import last_boxed
from mgpo.protocol import ProtocolConfig
from mgpo.scoring import score_response
from mgpo.types import iou

REWARDS = ("accuracy", "format", "grounding", "valid_box")


def assistant_turns(completion: Any) -> list[str]:
    """The model's own turns of a completion, in order (user messages are never scored)."""
    if isinstance(completion, str):
        return [completion]
    texts = []
    for message in completion:
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.append("".join(p.get("text", "") for p in content if p.get("type") == "text"))
    return texts


def joined_assistant_turns(completion: Any) -> str:
    """Every assistant turn of a completion, joined with newlines (not the scored response: that is the final turn)."""
    return "\n".join(assistant_turns(completion))


def make_accuracy_reward(cfg: ProtocolConfig | None = None) -> Callable[..., list[float]]:
    """The accuracy reward under ``cfg.scoring`` (paper by default)."""
    cfg = cfg or ProtocolConfig.paper()

    def accuracy_reward(
        completions: list,
        answer: list[str],
        choices: list[list[str]] | None = None,
        mgpo_turn2_cut: list[bool] | None = None,
        mgpo_response: list[str] | None = None,
        **_: Any,
    ) -> list[float]:
        """1.0 when the final turn's answer grades equal to the ground truth, else 0.0. The MGPO rollout hands over
        its episodes' scored text (``mgpo_response``); a plain completion (the one-turn baseline) is read directly."""
        out = []
        for i, completion in enumerate(completions):
            opts = choices[i] if choices is not None else None
            cut = bool(mgpo_turn2_cut[i]) if mgpo_turn2_cut is not None else False
            turns = [mgpo_response[i]] if mgpo_response is not None else assistant_turns(completion)
            score = score_response(turns, answer[i], opts, cfg, cut=cut)
            out.append(1.0 if score.correct else 0.0)
        return out

    return accuracy_reward


accuracy_reward = make_accuracy_reward()


def format_reward(completions: list, mgpo_box_valid: list[bool] | None = None, **_: Any):
    """0.5 for a valid turn-1 box (multi-turn only) plus 0.5 for a final \\boxed{} answer."""
    out = []
    for i, completion in enumerate(completions):
        score = 0.5 if last_boxed(joined_assistant_turns(completion)) is not None else 0.0
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


def valid_box_reward(completions: list, mgpo_box_valid: list[bool] | None = None, **_: Any) -> list[float]:
    """1.0 when turn 1's box passed the box rules (the next turn was shown a crop), else 0.0: rewards turn 1 alone,
    which shows that the gradient reaches the grounding turn (bench/learn.py's second run)."""
    if mgpo_box_valid is None:
        from mgpo.errors import MgpoError

        raise MgpoError("the valid_box reward needs the two-turn rollout (--algo mgpo)")
    return [1.0 if valid else 0.0 for valid in mgpo_box_valid]


def reward_functions(names: list[str], cfg: ProtocolConfig | None = None) -> list[Callable[..., list]]:
    """The reward callables for the given names, in order; accuracy scores under ``cfg.scoring``."""
    table = {
        "accuracy": make_accuracy_reward(cfg),
        "format": format_reward,
        "grounding": grounding_reward,
        "valid_box": valid_box_reward,
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        from mgpo.errors import MgpoError

        raise MgpoError(f"unknown reward(s) {', '.join(unknown)}; use any of: {', '.join(REWARDS)}")
    return [table[n] for n in names]
