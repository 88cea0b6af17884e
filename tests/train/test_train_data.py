"""Training data: the three schemas, formats, and one clear error before any model is loaded."""

from __future__ import annotations

import base64
import io
import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from train_helpers import write_images

from mgpo.benchmarks import split_inline_options
from mgpo.errors import MgpoError
from mgpo.train.data import load_training_data, open_image


def test_vstar_parquet_with_inline_options_and_relative_paths(tmp_path):
    names = write_images(tmp_path, 2)
    rows = [
        {"image": names[0], "text": "What is the color of the glove? (A) white (B) black (C) red (D) blue\n"
         "Answer with the option's letter from the given choices directly.", "label": "B",
         "category": "direct_attributes", "question_id": 7, "bbox": [10, 20, 30, 40]},
        {"image": names[1], "text": "Is the cup on the left or right of the dog? (A) left (B) right", "label": "A",
         "category": "relative_position", "question_id": 8, "bbox": None},
    ]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "vstar.parquet")
    ds = load_training_data(tmp_path / "vstar.parquet")
    r = ds[0]
    assert r["question"] == "What is the color of the glove?"
    assert r["choices"] == ["white", "black", "red", "blue"]
    assert r["answer"] == "B" and r["id"] == "7" and r["category"] == "direct_attributes"
    assert r["gt_box"] == [10, 20, 40, 60]  # V*'s [x, y, w, h] -> [x1, y1, x2, y2]
    assert ds[1]["choices"] == ["left", "right"] and ds[1]["gt_box"] is None
    assert open_image(r["image"]).size == (900, 700)  # the original, full size


def test_vstar_embedded_images_from_a_folder(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), "red").save(buf, "PNG")
    rows = [{"image": {"bytes": buf.getvalue(), "path": None}, "text": "Colour? (A) red (B) blue", "label": "A"}]
    (tmp_path / "data").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "data" / "part-0.parquet")
    ds = load_training_data(tmp_path / "data")
    assert open_image(ds[0]["image"]).size == (300, 200)


def test_mme_realworld_schema_with_base64_images(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), "blue").save(buf, "PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    rows = [{"index": 3, "question": "What is the colour?", "multi-choice options": ["(A) red", "(B) blue"],
             "answer": "B", "bytes": b64, "category": "Perception/Color"}]  # fmt: skip
    (tmp_path / "mme.jsonl").write_text(json.dumps(rows[0]) + "\n")
    ds = load_training_data(tmp_path / "mme.jsonl")
    assert ds[0]["choices"] == ["red", "blue"] and ds[0]["answer"] == "B" and ds[0]["id"] == "3"
    assert open_image(ds[0]["image"]).size == (640, 480)


def test_generic_answer_given_as_option_text(vqa_dir):
    rows = [json.loads(x) for x in (vqa_dir / "train.jsonl").read_text().splitlines()]
    rows[0]["answer"] = "green"
    (vqa_dir / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert load_training_data(vqa_dir)[0]["answer"] == "C"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"question": "q", "answer": "A"}], "missing column(s) image|image_path, choices"),
        ([{"text": "q (A) x (B) y"}], "missing column(s) label, image|image_path"),
        ([{"image_path": "x.png", "question": "q", "choices": ["a", "b"], "answer": "E"}], "answer 'E' is not one"),
        ([{"image_path": "x.png", "question": "", "choices": ["a", "b"], "answer": "A"}], "question is empty"),
        ([{"image_path": "x.png", "question": "q", "choices": ["a"], "answer": "A"}], "at least two"),
        ([{"image_path": "nope.png", "question": "q", "choices": ["a", "b"], "answer": "A"}], "not found"),
    ],
)
def test_bad_data_is_one_clear_error(tmp_path, rows, message):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(MgpoError) as err:
        load_training_data(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_data_path_is_one_clear_error(tmp_path):
    with pytest.raises(MgpoError, match="no such file or folder"):
        load_training_data(tmp_path / "missing.parquet")


@given(st.lists(st.text(alphabet="abcdefgh xyz", min_size=1, max_size=12).map(str.strip).filter(bool), min_size=2,
                max_size=5))  # fmt: skip
def test_inline_options_round_trip(options):
    text = "Which one is it? " + " ".join(f"({'ABCDE'[i]}) {o}" for i, o in enumerate(options))
    question, choices = split_inline_options(text)
    assert question == "Which one is it?"
    assert choices == options
