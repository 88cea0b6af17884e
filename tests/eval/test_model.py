"""The lmms-eval model's pieces that need no model: samples from docs of any task, and the returned text."""

from __future__ import annotations

import pytest

from mgpo.answers import extract_answer
from mgpo.eval.model import doc_sample, response_text
from mgpo.types import Trajectory, Turn


def test_mgpo_docs_keep_question_and_options_apart() -> None:
    boxes = [[0, 0, 4, 4], [10, 10, 20, 20]]
    doc = {"question": "What colour?", "options": ["red", "blue"], "answer": "B", "image_path": "/x.png",
           "question_id": "q", "category": "direct_attributes", "gt_boxes": boxes}  # fmt: skip
    sample = doc_sample(doc, ("ctx", None, {}, 0, "mgpo_vstar", "test"), "q")
    assert (sample.question, sample.choices, sample.ground_truth) == ("What colour?", ["red", "blue"], "B")
    assert sample.gt_box == [0, 0, 20, 20] and sample.meta["gt_boxes"] == doc["gt_boxes"]


def test_response_text_matches_the_engine_answer() -> None:
    box = '```json\n[{"bbox_2d": [1, 1, 50, 50], "label": "a"}]\n```'
    traj = Trajectory("q", ["x", "y"], [Turn("p", box + " so \\boxed{A}"), Turn("p", "I see it.")])
    text = response_text(traj)
    assert "\\boxed{A}" not in text  # cut after the JSON block, as the engine keeps the turn
    assert extract_answer(text, ["x", "y"])[0] is None
    traj.error = "backend failed"
    assert response_text(traj) == ""


def test_stock_task_is_refused_pointing_at_the_mgpo_task(tmp_path) -> None:
    from types import SimpleNamespace

    from mgpo.errors import MgpoError
    from mgpo.eval.model import MgpoModel
    from mgpo.eval.runner import EvalOptions, run_eval

    with pytest.raises(MgpoError, match=r"vstar_bench.*mgpo_vstar") as err:  # before any model or lmms-eval loads
        run_eval(EvalOptions(tasks=["vstar_bench"], output_dir=tmp_path / "o", backend="hf", model="/nonexistent"))
    assert "\n" not in str(err.value)
    model = MgpoModel.__new__(MgpoModel)  # the lmms-eval model itself, as `lmms-eval --model mgpo` builds it
    model.task_dict = {"mmerealworld_lite": {"test": [{"question": "q"}]}}
    request = SimpleNamespace(args=("ctx", {}, None, 0, "mmerealworld_lite", "test"))
    with pytest.raises(MgpoError, match=r"mmerealworld_lite.*mgpo_mmerw_lite"):
        model.generate_until([request])
