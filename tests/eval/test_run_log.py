"""trajectories.jsonl is never wiped by a rerun and survives a torn last line."""

from __future__ import annotations

import pytest

from mgpo.errors import MgpoError
from mgpo.eval.run_log import RunLog, read_rows


def _row(doc_id: int) -> dict:
    return {"mode": "grounded", "task": "mgpo_vstar", "doc_id": doc_id, "repeat": 0, "trajectory": {}}


def test_a_rerun_without_resume_refuses_instead_of_deleting(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    rec = RunLog(path)
    rec.write(_row(0))
    rec.write(_row(1))
    before = path.read_bytes()
    with pytest.raises(MgpoError, match="holds a previous run"):
        RunLog(path)
    assert path.read_bytes() == before
    assert [r["doc_id"] for r in read_rows(path)] == [0, 1]
    assert set(RunLog(path, resume=True).done) == {("grounded", "mgpo_vstar", 0, 0), ("grounded", "mgpo_vstar", 1, 0)}


def test_an_empty_file_is_a_fresh_start(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    path.write_text("")
    RunLog(path).write(_row(3))
    assert [r["doc_id"] for r in read_rows(path)] == [3]


def test_resume_cuts_only_the_torn_tail(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    rec = RunLog(path)
    rec.write(_row(0))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"mode": "grounded", "task": "mgpo_v')  # a kill mid-write
    rec = RunLog(path, resume=True)
    assert path.read_text().endswith("}\n")
    rec.write(_row(1))
    assert [r["doc_id"] for r in read_rows(path)] == [0, 1]
