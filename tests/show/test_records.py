"""Reading infer/eval trajectory files into records and selecting them, with one-line errors for bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mgpo.errors import MgpoError
from mgpo.types import read_trajectories
from mgpo.view.records import Selection, as_records, load_original, load_records, select


def test_eval_rows_keep_task_category_and_the_engine_trajectory(eval_run):
    records = load_records(eval_run.path)
    assert [r.doc_id for r in records] == ["s1", "s2", "s3"]
    assert [(r.task, r.category) for r in records] == [
        ("vstar_attr", "color"), ("vstar_pos", "position"), ("vstar_attr", "color")
    ]  # fmt: skip
    # the same trajectories the core reader sees
    assert [r.trajectory for r in records] == read_trajectories(eval_run.path)
    assert [r.correct for r in records] == [True, False, False]
    assert records[0].trajectory.turns[0].box_original is not None
    assert records[2].trajectory.turns[0].fallback  # s3 gave no box


def test_infer_trajectory_json_is_one_record(eval_run, tmp_path):
    path = tmp_path / "trajectory.json"
    path.write_text(eval_run.trajectories[0].to_json(indent=2), encoding="utf-8")
    (record,) = load_records(path)
    assert record.task is None and record.trajectory == eval_run.trajectories[0]
    assert record.label == "s1"


def test_a_version_1_eval_row_still_reads_with_its_final_turn_as_response(eval_run, tmp_path):
    row = json.loads(eval_run.path.read_text(encoding="utf-8").splitlines()[0])
    traj = row["trajectory"]
    assert traj["schema_version"] == 2 and traj["response"] == traj["turns"][-1]["output"]
    del traj["response"]
    traj["schema_version"] = 1  # as written before Trajectory.response was stored
    path = tmp_path / "v1.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (record,) = load_records(path)
    assert record.trajectory.response == traj["turns"][-1]["output"] and record.task == row["task"]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(), ["s1", "s2", "s3"]),
        (Selection(failed=True), ["s2", "s3"]),
        (Selection(correct=True), ["s1"]),
        (Selection(task="vstar_attr"), ["s1", "s3"]),
        (Selection(category="position"), ["s2"]),
        (Selection(task="vstar_attr", failed=True), ["s3"]),
        (Selection(id="s2"), ["s2"]),
        (Selection(index=1), ["s2"]),
        (Selection(index=-1), ["s3"]),
        (Selection(failed=True, index=0), ["s2"]),  # the index counts within the filtered selection
    ],
)
def test_select(eval_run, selection, expected):
    assert [r.doc_id for r in select(load_records(eval_run.path), selection)] == expected


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (Selection(failed=True, correct=True), "--failed and --correct exclude each other"),
        (Selection(task="nope"), "no sample with task 'nope'; tasks in the file: vstar_attr, vstar_pos"),
        (Selection(id="zzz"), "no sample matches --id zzz (3 in the file)"),
        (Selection(index=7), "--index 7 is out of range; 3 sample(s) match"),
        (Selection(category="position", correct=True), "no sample matches --category position --correct"),
    ],
)
def test_select_errors_are_one_line(eval_run, selection, message):
    with pytest.raises(MgpoError, match=re.escape(message)) as info:
        select(load_records(eval_run.path), selection)
    assert "\n" not in str(info.value)


def test_bad_files_are_named_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "turns": []}\nnot json\n{"question": "q"}\n', encoding="utf-8")
    with pytest.raises(MgpoError, match=r"bad.jsonl:2: not valid JSON"):
        load_records(bad)
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"question": "q", "turns": []}\n{"question": "q", "tu', encoding="utf-8")
    assert len(load_records(torn)) == 1  # a torn last line from a killed run is skipped
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n', encoding="utf-8")
    with pytest.raises(MgpoError, match=r"other.jsonl:1: not a trajectory"):
        load_records(other)
    with pytest.raises(MgpoError, match="no such file"):
        load_records(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(MgpoError, match="no trajectories"):
        load_records(empty)


def test_images_are_found_next_to_the_file_or_reported_missing(eval_run, tmp_path):
    # a relative image_path resolves against the trajectory file's folder when not found from the cwd
    shutil.copy(eval_run.images["s1"], tmp_path / "s1.png")
    row = dict(eval_run.rows[0], trajectory=dict(eval_run.rows[0]["trajectory"], image_path="s1.png"))
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (record,) = load_records(path)
    image, note = load_original(record)
    assert note is None and image.size == (1200, 900)

    gone = dict(row, trajectory=dict(row["trajectory"], image_path=str(Path("/nonexistent/x.png"))))
    image, note = load_original(as_records([gone])[0])
    assert image is None and note == "image not found: /nonexistent/x.png"
    no_path = dict(row, trajectory=dict(row["trajectory"], image_path=None))
    assert load_original(as_records([no_path])[0]) == (None, "no image: the trajectory has no image_path")


def test_as_records_takes_rows_dicts_and_trajectories(eval_run):
    traj = eval_run.trajectories[1]
    records = as_records([eval_run.rows[0], traj.to_dict(), traj])
    assert [r.task for r in records] == ["vstar_attr", None, None]
    assert records[1].trajectory == records[2].trajectory == traj


def test_impossible_boxes_are_refused_in_one_line(eval_run, tmp_path):
    row = eval_run.rows[0]
    turns = [dict(row["trajectory"]["turns"][0], box_original=[500, 10, 100, 90]), *row["trajectory"]["turns"][1:]]
    path = tmp_path / "edited.jsonl"
    path.write_text(json.dumps(dict(row, trajectory=dict(row["trajectory"], turns=turns))) + "\n", encoding="utf-8")
    with pytest.raises(MgpoError, match=re.escape("edited.jsonl:1: turn 1 box_original [500, 10, 100, 90] is not")):
        load_records(path)
    path.write_text(json.dumps(dict(row, trajectory=dict(row["trajectory"], gt_box=[1, 2]))) + "\n", encoding="utf-8")
    with pytest.raises(MgpoError, match=re.escape("edited.jsonl:1: gt_box [1, 2] is not [x1, y1, x2, y2]")):
        load_records(path)
