"""Reading the chosen option out of model text. One extractor for infer, eval and the training reward.

First the LAST ``\\boxed{...}`` (the paper's rule); only when there is none, a short list of strict fallbacks, each
anchored so that a stray capital letter in prose is never taken for an answer.
"""

from __future__ import annotations

import re
import string

LETTERS = string.ascii_uppercase


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in text whose braces close, balanced; None when there is none.

    One pass that pairs every brace (a stack), so that a 100 kB run of unclosed ``\\boxed{`` costs one scan, not one
    scan per opener."""
    if "\\boxed{" not in text:
        return None
    boxed = {m.end() - 1 for m in _BOXED.finditer(text)}  # the "{" of each \boxed{
    opened: list[int] = []
    last: tuple[int, int] | None = None
    for m in _BRACE.finditer(text):
        at = m.start()
        if text[at] == "{":
            opened.append(at)
        elif opened:
            start = opened.pop()
            if start in boxed and (last is None or start > last[0]):
                last = (start, at)
    return text[last[0] + 1 : last[1]].strip() if last else None


_BOXED = re.compile(r"\\boxed\{")
_BRACE = re.compile(r"[{}]")


def letter_of(content: str, choices: list[str] | None = None) -> str | None:
    """Normalise an answer span to an option letter: 'C', '(c)', 'C. red', '\\text{C}', or the option's text."""
    content = re.sub(r"\\text\{([^{}]*)\}", r"\1", content).strip().strip("$ ").strip()
    n = len(choices) if choices else 5
    valid = LETTERS[: max(n, 1)]
    m = re.fullmatch(r"\(?([A-Za-z])\)?(?:[.:)]\s*.*)?", content, re.DOTALL)
    if m and m.group(1).upper() in valid and not content[m.end(1) : m.end(1) + 1].isalpha():
        return m.group(1).upper()
    if choices:
        norm = _norm(content)
        for i, choice in enumerate(choices):
            if norm and norm == _norm(choice):
                return LETTERS[i]
    return None


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".").lower())


# A letter is an option only as a capital, or in parentheses: "the answer is a red cup" and "(a) is wrong" are
# English, not option A. Each pattern's first non-empty group is the letter.
_LETTER = r"(?:\(([A-Za-z])\)|([A-Z]))(?![A-Za-z])"
_FALLBACKS: list[tuple[str, re.Pattern[str]]] = [
    ("answer-tag", re.compile(r"<answer>\s*\(?([A-Za-z])\)?\s*</answer>", re.IGNORECASE)),
    ("answer-is", re.compile(r"(?i:answer\s+is)(?:\s*:)?\s*" + _LETTER)),
    ("answer-colon", re.compile(r"(?:^|\n)[^\S\n]*(?i:(?:final\s+)?answer)\s*:\s*" + _LETTER)),
    ("parenthesised", re.compile(r"^\s*\(([A-Z])\)(?:\s|[.:]|$)")),
    ("bare-letter", re.compile(r"^\s*([A-Z])(?:\s*[.)])?\s*$")),
]
# No two whitespace runs meet around an optional part, and no run of newlines is re-read from each of its lines:
# either made these patterns quadratic (a 100 kB run of newlines or spaces took minutes).


def extract_answer(text: str, choices: list[str] | None = None, fallbacks: bool = True) -> tuple[str | None, str]:
    """Return (letter or None, how it was found): 'boxed', a fallback's name, or 'none'."""
    boxed = last_boxed(text)
    if boxed is not None:
        return letter_of(boxed, choices), "boxed"
    if not fallbacks:
        return None, "none"
    valid = LETTERS[: len(choices)] if choices else LETTERS[:5]
    for name, pattern in _FALLBACKS:
        found = [next(g for g in m.groups() if g).upper() for m in pattern.finditer(text)]
        found = [f for f in found if f in valid]
        if found:
            return found[-1], name
    if choices:  # the whole text equal to one option's text (letter forms were the patterns' job above)
        norm = _norm(text)
        for i, choice in enumerate(choices):
            if norm and norm == _norm(choice):
                return LETTERS[i], "option-text"
    return None, "none"


def is_correct(answer: str | None, ground_truth: str | None) -> bool | None:
    """Case-insensitive letter match; None when there is no ground truth to judge against."""
    if ground_truth is None or str(ground_truth).strip() == "":
        return None
    gt = str(ground_truth).strip().strip("()").upper()
    return answer is not None and answer.upper() == gt
