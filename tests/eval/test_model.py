"""The lmms-eval model's pieces that need no model: samples from docs of any task, and the returned text."""

from __future__ import annotations

from PIL import Image

from mgpo.answers import extract_answer
from mgpo.eval.model import doc_sample, response_text
from mgpo.types import Trajectory, Turn


def test_builtin_task_docs_run_from_their_prompt() -> None:
    image = Image.new("RGB", (300, 200))

    def doc_to_messages(doc):  # what a built-in chat task such as vstar_bench hands over
        return [{"role": "user", "content": [{"type": "image", "url": image}, {"type": "text", "text": "Q? A. x"}]}]

    sample = doc_sample({"text": "raw"}, ("ctx", doc_to_messages, {}, 0, "vstar_bench", "test"), "vstar_bench:0")
    assert sample.image is image and sample.question == "Q? A. x" and sample.choices == []
    simple = doc_sample({}, ("Q?", {}, lambda d: [image], 0, "t", "test"), "t:0")  # simple-task request shape
    assert simple.image is image and simple.question == "Q?"


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
