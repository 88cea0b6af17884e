"""Rewards: the paper's binary last-\\boxed{} accuracy, and the optional format / grounding rewards."""

from __future__ import annotations

from mgpo.train.rewards import accuracy_reward, format_reward, grounding_reward, response_text


def _completion(turn1: str, turn2: str) -> list[dict]:
    return [{"role": "assistant", "content": turn1}, {"role": "user", "content": "\\boxed{A} <image> prompt text"},
            {"role": "assistant", "content": turn2}]  # fmt: skip


def test_accuracy_reads_the_last_boxed_of_the_models_turns_only():
    completions = [
        _completion("box", "so \\boxed{B}"),
        _completion("early \\boxed{B}", "final \\boxed{C}"),  # the LAST boxed counts
        _completion("box", "The answer is B"),  # no \\boxed{}: no fallback in the reward, as in the paper
        _completion("box", "\\boxed{(b)}"),
        _completion("box", "\\boxed{blue}"),  # option text maps to its letter
    ]
    choices = [["red", "blue"]] * 5
    assert accuracy_reward(completions, answer=["B"] * 5, choices=choices) == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert "prompt text" not in response_text(completions[0])  # the user message is never scored


def test_format_and_grounding_rewards():
    completions = [_completion("box", "\\boxed{A}"), _completion("none", "no answer")]
    assert format_reward(completions, mgpo_box_valid=[True, False]) == [1.0, 0.0]
    gt = [[0, 0, 100, 100], None]
    assert grounding_reward(completions, gt_box=gt, mgpo_box_original=[[0, 0, 50, 100], None]) == [0.5, None]
    assert grounding_reward(completions, gt_box=[[0, 0, 10, 10], None], mgpo_box_original=[None, None])[0] == 0.0
