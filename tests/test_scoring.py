"""Scoring: the paper's rule is mathruler's, checked against mathruler itself; the letter option's fallbacks."""

from __future__ import annotations

import pytest
from mathruler.grader import extract_boxed_content, grade_answer

from mgpo.answers import extract_answer
from mgpo.protocol import CROP_INSTRUCTION, FALLBACK_INSTRUCTION, ProtocolConfig
from mgpo.scoring import ScoredResponse, score_response

CHOICES = ["red", "blue", "green", "black"]


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        ("\\boxed{A}", True),
        ("so \\boxed{a}", True),
        ("\\boxed{(A)}", True),
        ("\\boxed{ A }", True),
        ("\\boxed{\\textbf{A}}", True),
        ("\\boxed{A.}", False),
        ("\\boxed{A) red}", False),
        ("\\boxed{red}", False),
        ("\\boxed{A} and then \\boxed{B", False),
        ("The answer is A.", False),  # no \boxed{} in the final turn: the prompt's own empty \boxed{} is read
        ("", False),
    ],
)
def test_paper_scoring_is_mathruler(final: str, expected: bool) -> None:
    assert score_response([final], "A", CHOICES, ProtocolConfig.paper()).correct is expected


def test_paper_scoring_reads_only_the_final_turn() -> None:
    turn1 = 'It is \\boxed{A}.\n```json\n[{"bbox_2d": [1, 2, 300, 400], "label": "x"}]\n```'
    assert score_response([turn1, "I cannot tell."], "A", CHOICES, ProtocolConfig.paper()).correct is False
    assert (
        score_response([turn1, "I cannot tell."], "A", CHOICES, ProtocolConfig.paper(scoring="letter")).correct is False
    )
    assert score_response([turn1, "\\boxed{A}"], "A", CHOICES, ProtocolConfig.paper()).correct is True


def _reference_response(turn1: str, turn2: str) -> str:
    """The reference's decoded response: turn 1, the turn-2 user message (its instruction ends in an empty
    \\boxed{}), turn 2."""
    return (
        f"{turn1}<|im_end|>\n<|im_start|>user\nBased on the provided coordinates, return the sub-image:\n"
        f"<|vision_start|><|image_pad|><|vision_end|>\nQuestion: q? The choices are listed below:\n(A) red\n"
        f"{CROP_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n{turn2}<|im_end|>"
    )


CORPUS = [
    "\\boxed{A}",
    "\\boxed{B}",
    "\\boxed{a}",
    "\\boxed{b}",
    "\\boxed{(A)}",
    "\\boxed{(b)}",
    "\\boxed{ A }",
    "\\boxed{\\textbf{A}}",
    "\\boxed{\\text{A}}",
    "\\boxed{\\mathrm{A}}",
    "\\boxed{A.}",
    "\\boxed{A)}",
    "\\boxed{A) red}",
    "\\boxed{A. red}",
    "\\boxed{red}",
    "\\boxed{blue}",
    "\\boxed{A} then \\boxed{B",
    "\\boxed{B} then \\boxed{A}",
    "\\boxed{A}\\boxed{}",
    "\\boxed{}",
    "\\boxed{{A}}",
    "\\boxed{A}}",
    "\\boxed{$A$}",
    "$\\boxed{A}$",
    "\\boxed{\\(A\\)}",
    "\\boxed{Option A}",
    "\\boxed{option a}",
    "\\boxed{A, B}",
    "\\boxed{AB}",
    "\\boxed{A or B}",
    "\\boxed{None}",
    "\\boxed{A\n}",
    "\\boxed{\nA}",
    "\\boxed {A}",
    "\\boxed{[A]}",
    "\\boxed{A:}",
    "\\boxed{A:red}",
    '\\boxed{"A"}',
    "\\boxed{'A'}",
    "\\boxed{\\{A\\}}",
    "\\boxed{\\textbf{(A)}}",
    "\\boxed{\\text{(A) red}}",
    "\\boxed{E}",
    "\\boxed{1}",
    "\\boxed{A}.",
    "Answer: A",
    "The answer is A.",
    "(A)",
    "A",
    "<answer>A</answer>",
    "\\boxed{\\mathbf{A}}",
    "\\boxed{A\\%}",
    "\\boxed{A^{}}",
    "\\boxed{a.}",
    "\\boxed{ (A) }",
    "\\boxed{A}\n\nSo \\boxed{A}",
    "",
    "\\fbox{A}",
    "\\boxed{\\boxed{A}}",
    "\\boxed{A}}}",
    "\\boxed{C} \\boxed{A",
    "\\boxed{\\textit{A}}",
]


@pytest.mark.parametrize("gt", ["A", "B"])
def test_paper_scoring_agrees_with_mathruler_on_the_reference_response(gt: str) -> None:
    turn1 = '```json\n[{"bbox_2d": [1, 2, 300, 400], "label": "x"}]\n```'
    assert len(CORPUS) >= 50
    for text in CORPUS:
        response = _reference_response(turn1, text)
        expected = grade_answer(extract_boxed_content(response), gt)
        assert score_response([turn1, text], gt, CHOICES, ProtocolConfig.paper()).correct is expected, text


def test_fallback_prompt_also_ends_in_an_empty_boxed() -> None:
    # the equivalence above rests on both turn-2 instructions ending with a literal, empty \boxed{}
    for instruction in (CROP_INSTRUCTION, FALLBACK_INSTRUCTION):
        assert extract_boxed_content(instruction) == ""


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is a red cup.", None),
        ("(a) is wrong", None),
        ("the answer is (b)", "B"),
        ("The answer is B.", "B"),
        ("Answer: C", "C"),
        ("red", "A"),  # option text
    ],
)
def test_letter_fallbacks_do_not_read_the_article(text: str, letter: str | None) -> None:
    assert extract_answer(text, CHOICES)[0] == letter


def test_scored_response_is_a_str_that_survives_copy_and_pickle() -> None:
    import copy
    import pickle

    score = score_response(["\\boxed{A}"], "A", CHOICES, ProtocolConfig.paper(scoring="letter"))
    r = ScoredResponse("\\boxed{A}", score)
    assert r == "\\boxed{A}" and isinstance(r, str)
    assert ScoredResponse("  x \n", score).strip().score == score  # lmms-eval strips responses before scoring
    for clone in (copy.deepcopy(r), pickle.loads(pickle.dumps(r))):
        assert isinstance(clone, ScoredResponse) and clone.score == score


def test_scored_response_survives_lmms_evals_filters_and_reasoning_tag_stripping() -> None:
    from lmms_eval.api.reasoning import strip_reasoning_tags
    from lmms_eval.filters.selection import TakeFirstFilter
    from lmms_eval.filters.transformation import StripThinkingFilter

    score = score_response(["Answer: A"], "A", CHOICES, ProtocolConfig.paper(scoring="letter"))
    r = ScoredResponse(" Answer: A \n", score)
    (first,) = TakeFirstFilter().apply([[r]], None)
    ((thought,),) = StripThinkingFilter().apply([[r]], None)
    for out in (first, thought, strip_reasoning_tags(r, [["<think>", "</think>"]])):
        assert isinstance(out, ScoredResponse) and out.score == score


# ---------------------------------------------------------------------------------------------------------------
# Long degenerate outputs (a model stuck repeating newlines or spaces): read in one pass. Each of these took minutes
# to hours before (patterns that re-read a whitespace run from each of its characters; one scan per unclosed
# \boxed{); the fuzz run at MGPO_FUZZ_N=5000 stalled on them.

N = 100_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n" * N + "Answer: B", ("B", "answer-colon")),
        ("\n" * N, (None, "none")),
        ("\t\n" * N + "  final answer : c", (None, "none")),  # a lowercase letter outside parentheses is prose
        ("\n " * N + "Answer: (c)", ("C", "answer-colon")),
        ("the answer is" + " " * N + "D", ("D", "answer-is")),
        ("the answer is" + " " * N + "x", (None, "none")),
        ("A" + " " * N + ")", ("A", "bare-letter")),
        ("A" + " " * N + "x", (None, "none")),
        ("\\boxed{" * N + "B", (None, "none")),
        ("\\boxed{A}" + "\\boxed{" * N, ("A", "boxed")),
        ("\\boxed{A" * N, (None, "none")),
    ],
)
def test_long_degenerate_outputs_are_read_in_one_pass(text: str, expected: tuple) -> None:
    assert extract_answer(text, CHOICES) == expected


def _last_boxed_by_rescanning(text: str) -> str | None:
    """The rule as first written (rescan from each \\boxed{, last first): the reference the one-pass form must equal."""
    start = text.rfind("\\boxed{")
    while start >= 0:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j].strip()
        start = text.rfind("\\boxed{", 0, start)
    return None


def test_one_pass_last_boxed_equals_rescanning_on_random_brace_soup() -> None:
    import random

    from mgpo.answers import last_boxed

    rng = random.Random(0)
    pieces = ["\\boxed{", "{", "}", "A", "B", " ", "\\boxed", "\\text{", "x"]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert last_boxed(text) == _last_boxed_by_rescanning(text), text
