"""Rewards: the paper's binary last-\\boxed{} accuracy, and the optional format / grounding rewards."""

from __future__ import annotations

from mgpo.train.rewards import accuracy_reward, format_reward, grounding_reward, joined_assistant_turns


def _completion(turn1: str, turn2: str) -> list[dict]:
    return [{"role": "assistant", "content": turn1}, {"role": "user", "content": "\\boxed{A} <image> prompt text"},
            {"role": "assistant", "content": turn2}]  # fmt: skip


def test_accuracy_is_mathruler_on_the_final_turn_only():
    completions = [
        _completion("box", "so \\boxed{B}"),
        _completion("early \\boxed{B}", "final \\boxed{C}"),  # the final turn counts
        _completion("box", "The answer is B"),  # no \\boxed{}: no fallback in the reward, as in the paper
        _completion("box", "\\boxed{(b)}"),
        _completion("box", "\\boxed{blue}"),  # the option's text is not its letter for mathruler
        _completion("\\boxed{B}", "no box here"),  # a turn-1 \\boxed{} never counts
        _completion("box", "\\boxed{B.}"),
    ]
    choices = [["red", "blue"]] * 7
    assert accuracy_reward(completions, answer=["B"] * 7, choices=choices) == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert "prompt text" not in joined_assistant_turns(completions[0])  # the user message is never joined in


def test_accuracy_scores_the_rollouts_response_when_it_is_handed_over():
    # the MGPO rollout passes each episode's scored text; the completion's messages are then not re-read
    completions = [_completion("box", "\\boxed{C}")] * 2
    got = accuracy_reward(completions, answer=["B", "B"], mgpo_response=["so \\boxed{B}", "\\boxed{C}"])
    assert got == [1.0, 0.0]


def test_a_turn_2_cut_by_the_total_cap_gets_reward_0():
    completions = [_completion("box", "\\boxed{B}")] * 2
    assert accuracy_reward(completions, answer=["B", "B"], mgpo_turn2_cut=[False, True]) == [1.0, 0.0]


def test_letter_scoring_reward_is_available_by_name():
    from mgpo.protocol import ProtocolConfig
    from mgpo.train.rewards import reward_functions

    (letter,) = reward_functions(["accuracy"], ProtocolConfig.paper(scoring="letter"))
    assert letter([_completion("box", "\\boxed{blue}")], answer=["B"], choices=[["red", "blue"]]) == [1.0]


def test_format_and_grounding_rewards():
    completions = [_completion("box", "\\boxed{A}"), _completion("none", "no answer")]
    assert format_reward(completions, mgpo_box_valid=[True, False]) == [1.0, 0.0]
    gt = [[0, 0, 100, 100], None]
    assert grounding_reward(completions, gt_box=gt, mgpo_box_original=[[0, 0, 50, 100], None]) == [0.5, None]
    assert grounding_reward(completions, gt_box=[[0, 0, 10, 10], None], mgpo_box_original=[None, None])[0] == 0.0
