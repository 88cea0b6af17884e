"""The lmms-eval model's pieces that need no model: samples from docs of any task, and the returned text."""

from __future__ import annotations

import pytest
from PIL import Image

from mgpo.backends.scripted import ScriptedBackend
from mgpo.engine import Engine
from mgpo.eval.lmms_model import doc_sample, recorded_response, response_text
from mgpo.types import Sample, Trajectory, Turn


def test_mgpo_docs_keep_question_and_options_apart() -> None:
    boxes = [[0, 0, 4, 4], [10, 10, 20, 20]]
    doc = {"question": "What colour?", "options": ["red", "blue"], "answer": "B", "image_path": "/x.png",
           "question_id": "q", "category": "direct_attributes", "gt_boxes": boxes}  # fmt: skip
    sample = doc_sample(doc, ("ctx", None, {}, 0, "mgpo_vstar", "test"), "q")
    assert (sample.question, sample.choices, sample.ground_truth) == ("What colour?", ["red", "blue"], "B")
    assert sample.gt_box == [0, 0, 20, 20] and sample.meta["gt_boxes"] == doc["gt_boxes"]


def test_response_text_is_the_engines_stored_response_with_its_score() -> None:
    box = '```json\n[{"bbox_2d": [1, 1, 300, 300], "label": "a"}]\n```'
    backend = ScriptedBackend([{"turns": [box + " so \\boxed{A}", "I see it: \\boxed{B}"]}])
    traj = Engine(backend).run_one(Sample(Image.new("RGB", (900, 700)), "q", ["x", "y"], "B"))
    text = response_text(traj)
    assert text == traj.response == traj.turns[-1].output  # the final turn, as lmms-eval always got it
    assert text.score is not None and (text.score.answer, text.score.correct) == ("B", True)
    traj.error = "backend failed"
    assert response_text(traj) == ""


def test_resume_reads_the_response_from_the_stored_trajectory_v1_rows_included() -> None:
    turns = [Turn("p", "box"), Turn("p", "final \\boxed{A}")]
    v1 = Trajectory("q", ["x", "y"], turns, answer="A", answer_source="boxed", correct=True).to_dict()
    del v1["response"]  # a version-1 row stored none
    v1["schema_version"] = 1
    got = recorded_response({"trajectory": v1})
    assert got == "final \\boxed{A}" and got.score is not None and got.score.correct is True
    v2 = Trajectory("q", ["x", "y"], turns, response="stored", answer="A", correct=True).to_dict()
    assert recorded_response({"trajectory": v2}) == "stored"


def test_stock_task_is_refused_pointing_at_the_mgpo_task(tmp_path) -> None:
    from types import SimpleNamespace

    from mgpo.errors import MgpoError
    from mgpo.eval.lmms_model import MgpoModel
    from mgpo.eval.runner import EvalOptions, run_eval

    with pytest.raises(MgpoError, match=r"vstar_bench.*mgpo_vstar") as err:  # before any model or lmms-eval loads
        run_eval(EvalOptions(tasks=["vstar_bench"], output_dir=tmp_path / "o", backend="hf", model="/nonexistent"))
    assert "\n" not in str(err.value)
    model = MgpoModel.__new__(MgpoModel)  # the lmms-eval model itself, as `lmms-eval --model mgpo` builds it
    model.task_dict = {"mmerealworld_lite": {"test": [{"question": "q"}]}}
    request = SimpleNamespace(args=("ctx", {}, None, 0, "mmerealworld_lite", "test"))
    with pytest.raises(MgpoError, match=r"mmerealworld_lite.*mgpo_mmerw_lite"):
        model.generate_until([request])
