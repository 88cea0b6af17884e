"""Benchmark rows -> one normalised ``Record``: the single reader of V*, MME-RealWorld (-Lite, -CN), HR-Bench and
generic VQA rows, used by eval (``mgpo.eval.docs`` / ``mgpo.eval.tasks``) and train (``mgpo.train.data``).

A Record holds the question WITHOUT its options, the option texts (no letters), the ground-truth letter, the
category, the ground-truth boxes as [x1, y1, x2, y2] in ORIGINAL pixels, and the row's image cell as the source gave
it (opening it is the caller's job: eval decodes at once, train lazily). Nothing here touches a model.

Schemas (detected from the columns; the first that fits wins):

- ``vstar``: ``text`` ('question (A) x (B) y ...', LLaVA's answer instruction dropped), ``label`` (letter or option
  text), ``category``, ``question_id``; ``bbox`` is V*'s own annotation, **[x, y, w, h]** (the upstream V* JSON,
  penghao-wu/vstar, stores ``"bbox": [[x, y, w, h], ...]``; the ``lmms-lab-encoder/vstar-bench`` hub set has no box
  column), one box or a list of them. ``mgpo data synth`` writes this schema, ``bbox`` included.
- ``mme-realworld``: ``question``, ``multi-choice options`` ('(A) text' items), ``answer``, ``category``
  (kept as 'Perception/<sub-task>' or 'Reasoning/<sub-task>', the paper's sub-category key), ``index``.
- ``hrbench``: ``question``, options in columns ``A`` .. ``D``, ``answer``, ``category`` (single | cross), ``index``.
- ``generic``: ``question``, ``choices`` (a list, or one string of '(A) ...' lines, MME-RealWorld's header line
  'The choices are listed below:' allowed and not an option), ``answer``, ``category``, ``id``.

In every schema an explicit ``gt_boxes`` (list of boxes) or ``gt_box`` (one box) column is **[x1, y1, x2, y2]** and
takes precedence over ``bbox``. A row that cannot be read is a one-line ``RowError`` naming the row and the column;
nothing is dropped or shifted silently.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field, replace
from typing import Any

from mgpo.answers import LETTERS
from mgpo.errors import MgpoError

SCHEMAS = {
    "vstar": "V* (text, label, image|image_path)",
    "mme-realworld": "MME-RealWorld (question, multi-choice options, answer, bytes|image)",
    "hrbench": "HR-Bench (question, A, B, answer, image)",
    "generic": "generic VQA (image|image_path, question, choices, answer)",
}
IMAGE_COLUMNS = ("image", "image_path", "bytes")
ID_COLUMNS = ("question_id", "id", "index")
_REQUIRED = {  # ties go to the first when suggesting: the generic schema is the one to suggest
    "generic": ["image|image_path", "question", "choices", "answer"],
    "vstar": ["text", "label", "image|image_path"],
    "mme-realworld": ["question", "multi-choice options", "answer", "bytes|image"],
    "hrbench": ["question", "A", "B", "answer", "image"],
}
_DETECT_ORDER = ("vstar", "mme-realworld", "hrbench", "generic")
_OPTION = re.compile(r"\(([A-Z])\)\s*")
_LLAVA_SUFFIX = re.compile(r"\s*Answer with the option'?s letter from the given choices directly\.?\s*$", re.I)
_LETTERED = re.compile(r"^\s*[\(（]?\s*([A-Z])\s*[\)）.:]\s*")


class RowError(MgpoError):
    """One row that cannot be read: which row, which column, why."""

    def __init__(self, row: str, column: str, why: str):
        self.row, self.column, self.why = row, column, why
        super().__init__(f"{row}, column '{column}': {why}")


@dataclass
class Record:
    """One benchmark question in mgpo's shape (see the module docstring)."""

    id: str
    question: str
    choices: list[str]
    answer: str  # a letter of choices
    category: str = ""
    gt_boxes: list[list[float]] = field(default_factory=list)  # [x1, y1, x2, y2], original pixels
    image: Any = None  # the row's image cell, untouched
    option_order: list[int] = field(default_factory=list)  # for each shown option, its index in the source

    def __post_init__(self) -> None:
        if not self.option_order:
            self.option_order = list(range(len(self.choices)))

    @property
    def gt_box(self) -> list[float] | None:
        """All targets' union (one box the crop should cover), or None without boxes."""
        return union_box(self.gt_boxes)


def union_box(boxes: list[list[float]]) -> list[float] | None:
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


# ---------------------------------------------------------------------------------------------------------------
# Schemas


def detect_schema(columns: list[str], name: str = "data") -> str:
    """Which of the accepted schemas the columns follow; MgpoError naming what is missing otherwise."""
    cols = set(columns)
    for schema in _DETECT_ORDER:
        if not _missing(_REQUIRED[schema], cols):
            return schema
    closest = min(_REQUIRED, key=lambda k: len(_missing(_REQUIRED[k], cols)))
    raise MgpoError(
        f"{name}: missing column(s) {', '.join(_missing(_REQUIRED[closest], cols))} for the {SCHEMAS[closest]} schema "
        f"(found: {', '.join(sorted(cols)) or 'none'}); accepted schemas: {'; '.join(SCHEMAS.values())}"
    )


def _missing(need: list[str], cols: set[str]) -> list[str]:
    return [n for n in need if not any(part in cols for part in n.split("|"))]


def read_row(schema: str, row: dict[str, Any], index: int) -> Record:
    """One row as a Record; RowError (naming the row and the column) when it cannot be read."""
    rid = next((str(row[c]) for c in ID_COLUMNS if not _blank(row.get(c))), str(index))
    where = f"row {index} (id {rid})" if rid != str(index) else f"row {index}"
    if schema == "vstar":
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RowError(where, "text", "the question is empty or not a string")
        question, choices = split_inline_options(text)
        q_col, c_col, a_col = "text", "text", "label"
    elif schema == "hrbench":
        question = row.get("question")
        choices = [str(row[k]).strip() for k in "ABCDE" if not _blank(row.get(k))]
        q_col, c_col, a_col = "question", "A", "answer"
    else:
        c_col = "multi-choice options" if schema == "mme-realworld" else "choices"
        question, choices = row.get("question"), option_list(row.get(c_col))
        q_col, a_col = "question", "answer"
    if not isinstance(question, str) or not question.strip():
        raise RowError(where, q_col, "the question is empty or not a string")
    if choices is None or len(choices) < 2:
        raise RowError(where, c_col, "needs at least two answer options")
    answer = row.get(a_col)
    letter = answer_letter(answer, choices)
    if letter is None:
        valid = ", ".join(LETTERS[: len(choices)])
        raise RowError(where, a_col, f"answer {answer!r} is not one of the option letters {valid} or an option's text")
    return Record(rid, question.strip(), choices, letter, _category(schema, row.get("category")),
                  _gt_boxes(schema, row, where), _image_cell(row))  # fmt: skip


def read_rows(schema: str, rows: list[dict[str, Any]], name: str = "data") -> list[Record]:
    """Every row as a Record, or one MgpoError listing the first malformed rows (so a file is fixed in one go)."""
    records, bad = [], []
    for i, row in enumerate(rows):
        try:
            records.append(read_row(schema, row, i))
        except RowError as exc:
            bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise MgpoError(f"{name}: {len(bad)} malformed row(s) for the {SCHEMAS[schema]} schema: "
                        f"{'; '.join(bad[:3])}{more}")  # fmt: skip
    return records


def _blank(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or (isinstance(value, str) and value.strip() in ("", "nan"))


def _category(schema: str, value: Any) -> str:
    category = "" if _blank(value) else str(value)
    if schema == "mme-realworld" and category:  # the paper's sub-category key: 'Perception/<task>'
        task = "Perception" if "perception" in category.lower() else "Reasoning"
        return f"{task}/{category.split('/')[-1]}"
    return category


def _image_cell(row: dict[str, Any]) -> Any:
    return next((row[c] for c in IMAGE_COLUMNS if not _blank(row.get(c))), None)


# ---------------------------------------------------------------------------------------------------------------
# Options and answers


def split_inline_options(text: str) -> tuple[str, list[str]]:
    """V*'s 'question (A) x (B) y' -> ('question', ['x', 'y']); the trailing LLaVA instruction is dropped.

    Options are the run of '(A)', '(B)', ... in order, so an option's own parentheses ('dark red (maroon)') and a
    stray '(X)' in the question stay text.
    """
    text = _LLAVA_SUFFIX.sub("", text.strip())
    marks = list(_OPTION.finditer(text))
    start = next((i for i, m in enumerate(marks) if m.group(1) == "A"), None)
    if start is None:
        return text, []
    run = [marks[start]]
    for m in marks[start + 1 :]:
        if m.group(1) == LETTERS[len(run)]:
            run.append(m)
    question = text[: run[0].start()].strip()
    choices = []
    for k, m in enumerate(run):
        end = run[k + 1].start() if k + 1 < len(run) else len(text)
        choices.append(text[m.end() : end].strip())
    return question, choices


def option_list(value: Any) -> list[str] | None:
    """Option texts from a list ('(A) x' or 'x' items) or a string of lines; a header line is not an option."""
    if isinstance(value, str):
        lines = [line for line in value.splitlines() if line.strip()]
        if any(_LETTERED.match(line) for line in lines):  # lettered lines: anything else is a header, not an option
            lines = [line for line in lines if _LETTERED.match(line)]
        value = lines
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return None
    return [_LETTERED.sub("", v, count=1).strip() for v in value]


def answer_letter(answer: Any, choices: list[str]) -> str | None:
    """The ground truth as a letter: 'B', 'b', '(B)' or the option's text ('blue'); None when it is neither."""
    if not isinstance(answer, str) or not answer.strip():
        return None
    text = answer.strip()
    if len(text) == 1 and text.upper() in LETTERS[: len(choices)]:  # a letter, even when an option's text is one
        return text.upper()
    for i, c in enumerate(choices):  # then the option's text: 'dark red (maroon)' keeps its parentheses
        if text.lower() == c.strip().lower():
            return LETTERS[i]
    a = text.strip("()（）").strip()
    if len(a) == 1 and a.upper() in LETTERS[: len(choices)]:
        return a.upper()
    return None


# ---------------------------------------------------------------------------------------------------------------
# Boxes


def _gt_boxes(schema: str, row: dict[str, Any], where: str) -> list[list[float]]:
    for column, xywh in (("gt_boxes", False), ("gt_box", False), ("bbox", schema == "vstar")):
        value = row.get(column)
        if _blank(value) or (isinstance(value, list | tuple) and not value):
            continue
        boxes = _box_list(value)
        if boxes is None:
            raise RowError(where, column, f"holds {value!r}, not a box [4 numbers] or a list of boxes")
        if xywh:
            boxes = [[x, y, x + w, y + h] for x, y, w, h in boxes]
        if any(b[2] < b[0] or b[3] < b[1] for b in boxes):
            kind = "[x, y, w, h] with w, h >= 0" if xywh else "[x1, y1, x2, y2] with x1 <= x2, y1 <= y2"
            raise RowError(where, column, f"holds {value!r}; a box is {kind}")
        return boxes
    return []


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _box_list(value: Any) -> list[list[float]] | None:
    items = list(value) if isinstance(value, list | tuple) else None
    if items is None:
        return None
    if len(items) == 4 and all(_is_number(v) for v in items):
        items = [items]
    out = []
    for box in items:
        if not isinstance(box, list | tuple) or len(box) != 4 or not all(_is_number(v) for v in box):
            return None
        out.append([float(v) for v in box])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Option order


def shuffle_options(record: Record, seed: int) -> Record:
    """Permute a record's options reproducibly (per seed and id) and remap its ground-truth letter."""
    n = len(record.choices)
    if n < 2:
        return record
    order = list(range(n))
    random.Random(f"{seed}:{record.id}").shuffle(order)
    a = record.answer
    # only a single valid letter is remapped: '' and 'AB' are substrings of 'ABCD' but not ground truths
    old = LETTERS.index(a) if len(a) == 1 and a in LETTERS[:n] else None
    return replace(
        record,
        choices=[record.choices[i] for i in order],
        answer=LETTERS[order.index(old)] if old is not None else a,
        option_order=[record.option_order[i] for i in order],
    )
