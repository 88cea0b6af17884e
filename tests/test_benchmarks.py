"""One benchmark-row layer: eval (build_docs) and train (load_training_data) read the same rows the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mgpo import benchmarks as B
from mgpo.errors import MgpoError
from mgpo.eval import docs as D
from mgpo.eval.tasks import build_docs
from mgpo.train.data import load_training_data

FAMILY = {"vstar": "vstar", "mme-realworld": "mmerw", "hrbench": "hrbench4k", "generic": "vstar"}


def _write(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), "white").save(folder / "img.png")
    path = folder / "rows.jsonl"
    path.write_text("".join(json.dumps({"image": "img.png", **r}) + "\n" for r in rows), encoding="utf-8")
    return path


def eval_view(path: Path, family: str, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    monkeypatch.setenv("MGPO_DATA", str(path))
    monkeypatch.delenv("MGPO_SHUFFLE_OPTIONS", raising=False)
    docs = build_docs(family)
    return [(d["question_id"], d["question"], list(d["options"]), d["answer"], d["category"],
             B.union_box([list(b) for b in d["gt_boxes"]])) for d in docs]  # fmt: skip


def train_view(path: Path) -> list[tuple]:
    ds = load_training_data(path)
    return [(r["id"], r["question"], list(r["choices"]), r["answer"], r["category"], r["gt_box"]) for r in ds]


# ---------------------------------------------------------------------------------------------------------------
# The defects the two old normalisers had, each read through both paths


def test_vstar_option_with_parentheses_keeps_four_options(tmp_path, monkeypatch) -> None:
    text = "What is the colour of the scarf? (A) dark red (maroon) (B) blue (C) green (D) white"
    path = _write(tmp_path, [{"question_id": "v1", "text": text, "label": "B", "category": "direct_attributes"}])
    want = ("v1", "What is the colour of the scarf?", ["dark red (maroon)", "blue", "green", "white"], "B",
            "direct_attributes", None)  # fmt: skip
    assert eval_view(path, "vstar", monkeypatch) == [want]
    assert train_view(path) == [want]


@pytest.mark.parametrize(
    ("bbox", "box"),
    [([10, 20, 30, 40], [10, 20, 40, 60]), ([[10, 20, 30, 40], [100, 5, 10, 10]], [10, 5, 110, 60])],
)
def test_vstar_bbox_is_xywh_flat_or_nested(tmp_path, monkeypatch, bbox, box) -> None:
    row = {"question_id": "v1", "text": "Colour? (A) red (B) blue", "label": "A", "bbox": bbox}
    path = _write(tmp_path, [row])
    assert eval_view(path, "vstar", monkeypatch)[0][-1] == box
    assert train_view(path)[0][-1] == box


def test_explicit_gt_boxes_are_xyxy(tmp_path, monkeypatch) -> None:
    row = {"question": "Colour?", "choices": ["red", "blue"], "answer": "A", "gt_boxes": [[1, 2, 3, 4], [5, 6, 7, 8]]}
    path = _write(tmp_path, [row])
    assert eval_view(path, "vstar", monkeypatch)[0][-1] == [1, 2, 7, 8] == train_view(path)[0][-1]


def test_answer_given_as_option_text_becomes_its_letter(tmp_path, monkeypatch) -> None:
    path = _write(tmp_path, [{"question_id": "v1", "text": "Colour? (A) red (B) blue", "label": "blue"}])
    assert eval_view(path, "vstar", monkeypatch)[0][3] == "B" == train_view(path)[0][3]


def test_single_letter_answer_is_a_letter_even_among_glyph_options() -> None:
    assert B.answer_letter("A", ["K", "A", "X"]) == "A" and B.answer_letter("(B)", ["K", "A", "X"]) == "B"


def test_mme_choices_header_line_is_not_an_option(tmp_path, monkeypatch) -> None:
    choices = "The choices are listed below:\n(A) red\n(B) blue\n(C) green\n"
    path = _write(tmp_path, [{"id": "g1", "question": "Colour?", "choices": choices, "answer": "C"}])
    assert train_view(path)[0][2:4] == (["red", "blue", "green"], "C")
    assert eval_view(path, "vstar", monkeypatch)[0][2:4] == (["red", "blue", "green"], "C")


def test_vstar_without_label_is_one_line_naming_the_column(tmp_path, monkeypatch) -> None:
    path = _write(tmp_path, [{"question_id": "v1", "text": "Colour? (A) red (B) blue"}])
    for read in (lambda: eval_view(path, "vstar", monkeypatch), lambda: train_view(path)):
        with pytest.raises(MgpoError) as err:
            read()
        assert "label" in str(err.value) and "\n" not in str(err.value)


def test_unreadable_row_names_row_and_column(tmp_path, monkeypatch) -> None:
    rows = [{"question_id": "v1", "text": "Colour? (A) red (B) blue", "label": "A"},
            {"question_id": "v2", "text": "Colour? (A) red (B) blue", "label": "E"}]  # fmt: skip
    path = _write(tmp_path, rows)
    for read in (lambda: eval_view(path, "vstar", monkeypatch), lambda: train_view(path)):
        with pytest.raises(MgpoError, match=r"row 1 \(id v2\), column 'label': answer 'E' is not one"):
            read()
    bad_box = _write(tmp_path / "b", [{**rows[0], "bbox": [1, 2, 3]}])
    with pytest.raises(MgpoError, match=r"row 0 \(id v1\), column 'bbox': holds \[1, 2, 3\]"):
        eval_view(bad_box, "vstar", monkeypatch)


@pytest.mark.parametrize("answer", ["", "AB"])
def test_shuffle_never_invents_a_ground_truth(answer: str) -> None:
    doc = {"question_id": "q", "options": ["red", "blue", "green"], "answer": answer, "option_order": [0, 1, 2]}
    for seed in range(20):
        assert D.shuffle_options(doc, seed)["answer"] == answer


# ---------------------------------------------------------------------------------------------------------------
# Property: the same rows give the same records through eval and train

_word = st.text(alphabet="abcdefgh xyz", min_size=1, max_size=8).map(str.strip).filter(bool)
_text = st.tuples(_word, st.none() | _word).map(lambda t: t[0] if t[1] is None else f"{t[0]} ({t[1]})")  # "x (y)"
_box = st.lists(st.integers(0, 500), min_size=4, max_size=4)


@st.composite
def _rows(draw) -> tuple[str, list[dict]]:
    schema = draw(st.sampled_from(["vstar", "mme-realworld", "hrbench", "generic"]))
    rows = []
    for i in range(draw(st.integers(1, 3))):
        options = draw(st.lists(_text, min_size=2, max_size=4, unique_by=str.lower))
        k = draw(st.integers(0, len(options) - 1))
        answer = draw(st.sampled_from(["ABCD"[k], "abcd"[k], f"({'ABCD'[k]})", options[k].upper()]))
        if len(options[k]) == 1 or any(o.lower() == options[k].lower() for j, o in enumerate(options) if j != k):
            answer = "ABCD"[k]
        question = draw(_word)
        cat = draw(st.sampled_from(["", "direct_attributes", "Perception/OCR"]))
        box = draw(st.none() | _box)
        if schema == "vstar":
            text = question + " " + " ".join(f"({'ABCD'[j]}) {o}" for j, o in enumerate(options))
            row = {"question_id": f"q{i}", "text": text, "label": answer, "category": cat, "bbox": box}
        elif schema == "mme-realworld":
            row = {"index": i, "question": question, "answer": answer, "category": cat or "Reasoning/Misc",
                   "multi-choice options": [f"({'ABCD'[j]}) {o}" for j, o in enumerate(options)]}  # fmt: skip
        elif schema == "hrbench":
            row = {"index": i, "question": question, "answer": answer, "category": cat,
                   **{"ABCD"[j]: o for j, o in enumerate(options)}}  # fmt: skip
        else:
            listed = draw(st.booleans())
            choices = options if listed else "The choices are listed below:\n" + "".join(
                f"({'ABCD'[j]}) {o}\n" for j, o in enumerate(options))  # fmt: skip
            row = {"id": f"g{i}", "question": question, "choices": choices, "answer": answer, "category": cat}
        if schema != "vstar" and box is not None:
            row["gt_box"] = sorted(box[:2]) and [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]),
                                                 max(box[1], box[3])]  # fmt: skip
        rows.append(row)
    return schema, rows


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_rows())
def test_eval_and_train_read_the_same_rows_identically(tmp_path_factory, monkeypatch, case) -> None:
    schema, rows = case
    path = _write(tmp_path_factory.mktemp("rows"), rows)
    with monkeypatch.context() as m:
        got_eval = eval_view(path, FAMILY[schema], m)
    got_train = train_view(path)
    assert got_eval == got_train
    assert len(got_eval) == len(rows)
