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


def test_task_scoring_is_the_paper_rule_unless_the_response_carries_its_score() -> None:
    from mgpo.protocol import ProtocolConfig
    from mgpo.scoring import ScoredResponse, score_response

    doc = {"question_id": "q", "category": "direct_attributes", "options": ["red", "blue", "green", "black"],
           "answer": "C"}  # fmt: skip
    assert score(doc, "so \\boxed{C}")["score"] == 1
    assert score(doc, "Answer: C")["score"] == 0  # a stock model's plain text: the paper rule, no fallbacks
    assert score(doc, "")["score"] == 0
    letter = score_response(["Answer: C"], "C", doc["options"], ProtocolConfig.paper(scoring="letter"))
    item = score(doc, ScoredResponse("Answer: C", letter))
    assert item["score"] == 1 and item["source"] == "answer-colon"
