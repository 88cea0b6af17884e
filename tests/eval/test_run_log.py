"""trajectories.jsonl is never wiped by a rerun and survives a torn last line."""

from __future__ import annotations

import pytest

from mgpo.errors import MgpoError
from mgpo.eval.run_log import RunLog, merge_parts, process_log, read_rows


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


def test_merge_parts_adds_each_rank_once_and_a_retry_replaces_a_failed_row(tmp_path):
    main, parts = tmp_path / "trajectories.jsonl", [tmp_path / "r0.jsonl", tmp_path / "r1.jsonl"]
    failed = {**_row(2), "trajectory": {"error_kind": "backend"}}
    RunLog(main).write(failed)
    RunLog(parts[0]).write(_row(0))
    for row in (_row(1), _row(2), _row(0)):  # doc 0 twice (rank 0 has it): kept once
        RunLog(parts[1], resume=True).write(row)
    assert merge_parts(main, parts) == 3
    rows = read_rows(main)
    assert sorted(r["doc_id"] for r in rows) == [0, 1, 2] and not any(p.exists() for p in parts)
    assert next(r for r in rows if r["doc_id"] == 2)["trajectory"] == {}  # the retry, not the failure
    # on --resume, a rank counts the merged file and the other parts as done
    RunLog(parts[1]).write(_row(5))
    assert set(RunLog(parts[0], resume=True, others=(main, parts[1])).done) == {
        ("grounded", "mgpo_vstar", d, 0) for d in (0, 1, 2, 5)
    }


def test_under_several_processes_each_rank_appends_to_its_own_part_and_resume_counts_them_all(tmp_path):
    path = tmp_path / "t.jsonl"
    log0, parts = process_log(path, None, False, rank=0, world=2)
    log1, _ = process_log(path, None, False, rank=1, world=2)
    assert parts == [tmp_path / "t.rank0.jsonl", tmp_path / "t.rank1.jsonl"]
    log0.write(_row(0))
    log1.write(_row(1))
    assert not path.exists() and [r["doc_id"] for r in read_rows(parts[1])] == [1]
    # killed before the merge: a resumed rank counts what every part and the merged file hold as done
    merge_parts(path, parts[:1])
    again, _ = process_log(path, None, True, rank=1, world=2)
    assert {k[2] for k in again.done} == {0, 1}
    alone, none = process_log(path, None, True, rank=0, world=1)
    assert alone.path == path and none == []
