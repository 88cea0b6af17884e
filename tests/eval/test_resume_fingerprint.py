"""A run directory records what wrote it (run.json); `--resume` continues only the same run and refuses another
model, protocol, task, data set or sampling with one line naming what differs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mgpo.errors import MgpoError
from mgpo.eval.fingerprint import RUN_FILE, differences, fingerprint
from mgpo.eval.run_log import read_rows
from mgpo.eval.runner import EvalOptions, run_eval
from mgpo.protocol import ProtocolConfig
from mgpo.sampling import Sampling


@pytest.fixture(scope="module")
def first_run(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> EvalOptions:
    tmp = tmp_path_factory.mktemp("fp")
    frame = pd.read_parquet(synth_dir / "test.parquet")
    turns = ['```json\n[{"bbox_2d": [10, 10, 90, 90]}]\n```', "\\boxed{A}"]
    responses = tmp / "r.jsonl"
    responses.write_text("".join(json.dumps({"id": q, "turns": turns}) + "\n" for q in frame.question_id))
    opts = EvalOptions(tasks=["mgpo_vstar"], output_dir=tmp / "o", data=synth_dir, model="scripted-model",
                       backend="scripted", responses=responses, limit=3)  # fmt: skip
    run_eval(opts)
    return opts


def test_run_json_records_the_fingerprint(first_run: EvalOptions) -> None:
    recorded = json.loads((first_run.output_dir / RUN_FILE).read_text())["fingerprint"]
    assert recorded == fingerprint(first_run)
    assert recorded["model"] == "scripted-model" and recorded["tasks"] == ["mgpo_vstar"]
    assert recorded["protocol"]["max_turns"] == 2
    data = recorded["data"]
    assert data["path"] == str(first_run.data.resolve()) and data["files"]["test.parquet"]["size"] > 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": "another-model"}, 'model: was "scripted-model", now "another-model"'),
        ({"protocol": ProtocolConfig.paper(max_turns=3)}, "protocol.max_turns: was 2, now 3"),
        ({"protocol": ProtocolConfig.paper(scoring="letter")}, "protocol.scoring"),
        ({"tasks": ["mgpo_vstar_attr"]}, 'tasks: was ["mgpo_vstar"], now ["mgpo_vstar_attr"]'),
        ({"sampling": Sampling.make(None, 1.0, None, 3)}, "sampling."),
        ({"shuffle_options": 7}, "shuffle_options: was null, now 7"),
    ],
)
def test_resume_of_a_different_run_is_refused(first_run: EvalOptions, change: dict, named: str) -> None:
    before = (first_run.output_dir / "trajectories.jsonl").read_bytes()
    other = dataclasses.replace(first_run, resume=True, **change)
    with pytest.raises(MgpoError) as info:
        run_eval(other)
    message = str(info.value)
    assert "\n" not in message and named in message
    assert "--resume" in message and "--output-dir" in message  # the fix is named
    assert (first_run.output_dir / "trajectories.jsonl").read_bytes() == before  # nothing appended


def test_resume_with_other_data_is_refused(first_run: EvalOptions, tmp_path: Path) -> None:
    copy = tmp_path / "d"
    shutil.copytree(first_run.data, copy)  # the same rows under another path: another data source all the same
    with pytest.raises(MgpoError, match=r"data\.path: was .*, now "):
        run_eval(dataclasses.replace(first_run, resume=True, data=copy))
    # the same path rewritten (another size or time) is another data set too
    at_copy = fingerprint(dataclasses.replace(first_run, data=copy))
    with (copy / "test.parquet").open("ab") as fh:
        fh.write(b"\0")
    rewritten = differences(at_copy, fingerprint(dataclasses.replace(first_run, data=copy)))
    assert any(d.startswith("data.files.test.parquet.size: was ") for d in rewritten)


def test_resume_of_the_same_run_continues(first_run: EvalOptions) -> None:
    """Settings that only say how much of the run is done (--limit, --batch-size) may change on --resume."""
    results = run_eval(dataclasses.replace(first_run, resume=True, limit=5, batch_size=2))
    assert results["tasks"]["mgpo_vstar"]["overall"]["n"] == 5
    assert len(read_rows(first_run.output_dir / "trajectories.jsonl")) == 5


def test_a_run_directory_from_before_fingerprints_is_resumed(first_run: EvalOptions, tmp_path: Path) -> None:
    out = tmp_path / "old"
    shutil.copytree(first_run.output_dir, out)
    (out / RUN_FILE).unlink()
    run_eval(dataclasses.replace(first_run, output_dir=out, resume=True))
    assert json.loads((out / RUN_FILE).read_text())["fingerprint"] == fingerprint(first_run)


def test_differences_name_nested_settings() -> None:
    assert differences({"a": 1, "p": {"x": 1, "y": 2}}, {"a": 1, "p": {"x": 1, "y": 3}, "n": True}) == [
        "n: was null, now true",
        "p.y: was 2, now 3",
    ]
