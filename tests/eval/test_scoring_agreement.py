"""results.json and lmms-eval's own aggregate agree under every --scoring (one scorer, carried to lmms-eval)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mgpo.eval.run_log import read_rows
from mgpo.eval.runner import EvalOptions, run_eval
from mgpo.protocol import ProtocolConfig


def _answers(label: str, i: int) -> str:
    wrong = "B" if label != "B" else "A"
    return [
        f"\\boxed{{{label}}}",  # both scorings: right
        f"\\boxed{{({label.lower()})}}",  # both: right
        f"The answer is {label}.",  # letter (fallback): right; paper: no \boxed{} -> wrong
        f"\\boxed{{{label}.}}",  # letter: right; paper (mathruler): wrong
        f"\\boxed{{{wrong}}}",  # both: wrong
    ][i % 5]


@pytest.mark.parametrize(("scoring", "expected"), [("paper", 40.0), ("letter", 80.0)])
def test_results_json_and_lmms_eval_agree(
    synth_dir: Path, tmp_path: Path, box_turn: str, scoring: str, expected: float
) -> None:
    frame = pd.read_parquet(synth_dir / "test.parquet").head(10)
    path = tmp_path / "r.jsonl"
    lines = [{"id": r.question_id, "turns": [box_turn, _answers(r.label, i)]} for i, r in enumerate(frame.itertuples())]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    opts = EvalOptions(tasks=["mgpo_vstar"], output_dir=tmp_path / "o", data=synth_dir, model="unused",
                       backend="scripted", responses=path, limit=10,
                       protocol=ProtocolConfig.paper(scoring=scoring))  # fmt: skip
    task = run_eval(opts)["tasks"]["mgpo_vstar"]
    assert task["overall"]["accuracy"] == expected
    assert task["lmms_eval"]["accuracy,none"] == expected
    rows = read_rows(tmp_path / "o" / "trajectories.jsonl")
    assert 10 * sum(r["correct"] for r in rows) == expected
    assert all(r["trajectory"]["protocol"]["scoring"] == scoring for r in rows)
    samples = (tmp_path / "o" / "lmms_eval" / "grounded" / "samples_mgpo_vstar.jsonl").read_text().splitlines()
    by_id = {r["question_id"]: bool(r["correct"]) for r in rows}
    for line in samples:  # per sample, not just on average
        item = json.loads(line)["accuracy"]
        assert bool(item["score"]) == by_id[item["question_id"]]
