"""Normalising benchmark rows, local data modes, and reproducible option shuffling."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgpo import benchmarks as B
from mgpo.errors import MgpoError
from mgpo.eval import docs as D
from mgpo.eval.tasks import build_docs


def test_split_vstar_text() -> None:
    q, opts = B.split_inline_options("What is the color of the glove? (A) white (B) black (C) red (D) blue")
    assert q == "What is the color of the glove?" and opts == ["white", "black", "red", "blue"]


def test_mmerw_row() -> None:
    row = {"index": 7, "question": "Which?", "multi-choice options": ["(A) one", "（B） two"], "answer": "B",
           "category": "Reasoning/Autonomous_Driving"}  # fmt: skip
    rec = B.read_row("mme-realworld", row, 0)
    assert rec.choices == ["one", "two"] and rec.category == "Reasoning/Autonomous_Driving" and rec.id == "7"


@given(st.integers(0, 10_000), st.integers(2, 5), st.integers(0, 4))
def test_shuffle_keeps_the_answer(seed: int, n: int, correct: int) -> None:
    correct %= n
    doc = {"question_id": "q1", "options": [f"opt{i}" for i in range(n)], "answer": "ABCDE"[correct],
           "option_order": list(range(n))}  # fmt: skip
    out = D.shuffle_options(doc, seed)
    assert out == D.shuffle_options(doc, seed)  # reproducible
    assert out["options"]["ABCDE".index(out["answer"])] == f"opt{correct}"
    assert [f"opt{i}" for i in out["option_order"]] == out["options"]


@pytest.mark.parametrize("form", ["parquet", "jsonl", "folder"])
def test_local_modes(synth_dir: Path, tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = pd.read_parquet(synth_dir / "test.parquet")
    if form == "parquet":
        path = synth_dir / "test.parquet"
    elif form == "folder":
        path = synth_dir
    else:  # JSONL elsewhere, with absolute image paths
        path = tmp_path / "v.jsonl"
        rows = json.loads(frame.to_json(orient="records"))
        rows = [{**r, "image": str(synth_dir / r["image"])} for r in rows]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("MGPO_DATA", str(path))
    monkeypatch.delenv("MGPO_SHUFFLE_OPTIONS", raising=False)
    ds = build_docs("vstar", "relative_position")
    assert len(ds) == (frame.category == "relative_position").sum()
    doc = ds[0]
    assert Path(doc["image_path"]).is_file() and doc["answer"] in "AB" and len(doc["gt_boxes"]) == 2


def test_bad_data_paths_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(MgpoError, match="not found"):
        D.find_data_file(tmp_path / "missing")
    with pytest.raises(MgpoError, match=r"no \.parquet or \.jsonl"):
        D.find_data_file(tmp_path)
