"""The shared extractor on the cases where lmms-eval's stock V*/MME extractors fail."""

from __future__ import annotations

import pytest

from mgpo.answers import extract_answer
from mgpo.eval.tasks import score


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("Answer: C", "C"),
        ("Based on the image, the answer is A.", "A"),
        ("<answer>B</answer>", "B"),
        ("The sign reads 7, so \\boxed{D}", "D"),
        ("(B)", "B"),
        ("C", "C"),
    ],
)
def test_extractor_cases(text: str, letter: str) -> None:
    assert extract_answer(text, ["w", "x", "y", "z"])[0] == letter


def test_task_scoring_uses_the_shared_extractor() -> None:
    doc = {"question_id": "q", "category": "direct_attributes", "options": ["red", "blue", "green", "black"],
           "answer": "C"}  # fmt: skip
    assert score(doc, "Answer: C")["score"] == 1
    assert score(doc, "Based on the image, the answer is A.")["prediction"] == "A"
    assert score(doc, "")["score"] == 0
