"""Scoring one sample's response: one function for infer, eval (results.json and the lmms-eval task) and the reward.

``paper`` (the reference, spec §5): mathruler's ``extract_boxed_content`` then ``grade_answer`` against the ground
truth. The reference scores its decoded response, which includes the turn-2 user message whose instruction ends in a
literal, empty ``\\boxed{}``; so the last ``\\boxed{`` is the final turn's when it has one, and otherwise that empty
one. Scoring the final turn alone, reading "" when it has no ``\\boxed{``, is therefore the same rule, and a
``\\boxed{}`` written in an earlier turn never counts. ``letter``: mgpo's option-letter reader (mgpo.answers) on the
final turn, with its strict fallbacks when ``answer_fallbacks`` is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mgpo.answers import extract_answer, is_correct

BOXED = "\\boxed{"
SCORINGS = ("paper", "letter")


@dataclass(frozen=True)
class Score:
    """What was read from the response, how, and whether it is right (None: no ground truth to judge by)."""

    answer: str | None
    source: str  # 'boxed', a letter fallback's name, 'cut' (the total cap cut the final turn) or 'none'
    correct: bool | None


def score_response(
    turns: Sequence[str], ground_truth: str | None, choices: Sequence[str] | None, cfg: Any, cut: bool = False
) -> Score:
    """Score the assistant ``turns`` of one sample under ``cfg.scoring``; ``cut``: the final turn was cut by the
    total cap, which the reference's final-EOS mask turns into reward 0 (spec §4)."""
    final = turns[-1] if turns else ""
    judged = ground_truth is not None and str(ground_truth).strip() != ""
    if cut:
        return Score(None, "cut", False if judged else None)
    if cfg.scoring == "letter":
        letter, source = extract_answer(final, list(choices) if choices else None, cfg.answer_fallbacks)
        return Score(letter, source, is_correct(letter, ground_truth))
    content = paper_answer(final)
    answer = None if content in ("", "None") else content
    return Score(answer, "boxed" if answer is not None else "none", grade(content, ground_truth) if judged else None)


def paper_answer(final_turn: str) -> str:
    """What the reference's extractor reads from a response whose final turn is ``final_turn``: the last
    ``\\boxed{...}``'s content, "None" when that one is unclosed, "" (the prompt's empty box) when there is none."""
    from mathruler.grader import extract_boxed_content

    return extract_boxed_content(final_turn) if BOXED in final_turn else ""


def grade(answer: str, ground_truth: str | None) -> bool:
    """mathruler's ``grade_answer``; an exception inside sympy counts as wrong rather than sinking the run."""
    from mathruler.grader import grade_answer

    try:
        return bool(grade_answer(answer, str(ground_truth).strip()))
    except Exception:
        return False


class ScoredResponse(str):
    """A response string that carries the engine's own score of it, so that lmms-eval's per-sample scorer uses the
    run's scoring (results.json and lmms-eval's aggregate then agree). A plain str still scores, by the paper rule."""

    score: Score | None

    def __new__(cls, text: str, score: Score | None = None) -> ScoredResponse:
        obj = super().__new__(cls, text)
        obj.score = score
        return obj

    # lmms-eval's Task.process_results strips every response (and its reasoning-tag filter ends with a strip) before
    # the task's scorer sees it; str.strip would return a plain str and drop the score
    def strip(self, chars: str | None = None) -> ScoredResponse:
        return ScoredResponse(str.strip(self, chars), self.score)

    def lstrip(self, chars: str | None = None) -> ScoredResponse:
        return ScoredResponse(str.lstrip(self, chars), self.score)

    def rstrip(self, chars: str | None = None) -> ScoredResponse:
        return ScoredResponse(str.rstrip(self, chars), self.score)
