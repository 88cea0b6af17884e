"""Metrics over trajectory rows."""

from __future__ import annotations

import math

import pytest

from mgpo.eval import metrics as M
from mgpo.eval.compare import mcnemar_exact


def _row(doc_id: int, correct: bool, category: str = "a", box=None, gt=None, repeat: int = 0, fallback=None) -> dict:
    turns = [{"box_original": box, "fallback": fallback, "visual_tokens": 100, "output_tokens": 5, "seconds": 0.5},
             {"visual_tokens": 50, "output_tokens": 3, "seconds": 0.25}]  # fmt: skip
    return {"task": "t", "doc_id": doc_id, "repeat": repeat, "category": category, "correct": correct,
            "trajectory": {"turns": turns, "meta": {"gt_boxes": gt or []}, "protocol": {}}}  # fmt: skip


def test_accuracy_and_wilson() -> None:
    acc = M.accuracy([1] * 7 + [0] * 3)
    assert acc["accuracy"] == 70.0 and acc["n"] == 10
    lo, hi = acc["ci95"]
    assert lo == pytest.approx(39.68, abs=0.01) and hi == pytest.approx(89.22, abs=0.01)


def test_macro_is_unweighted() -> None:
    pairs = [("P/OCR", 1)] * 9 + [("P/OCR", 0)] + [("R/MO", 0)] * 2
    assert M.macro_accuracy(pairs) == pytest.approx(45.0)
    rows = [_row(i, s, c) for i, (c, s) in enumerate(pairs)]
    out = M.task_accuracy(rows, macro=True)
    assert out["overall"]["accuracy"] == pytest.approx(45.0) and out["micro"]["accuracy"] == pytest.approx(75.0)


def test_grounding_iou_hit_and_fallbacks() -> None:
    rows = [
        _row(0, True, box=[0, 0, 10, 10], gt=[[0, 0, 10, 10]]),  # exact: IoU 1, hit
        _row(1, False, box=[0, 0, 20, 20], gt=[[0, 0, 10, 10]]),  # IoU .25, contains the centre
        _row(2, False, gt=[[0, 0, 10, 10]], fallback="no box found (needs ...)"),
    ]
    g = M.grounding(rows)
    assert g["valid_box_ratio"] == pytest.approx(2 / 3, abs=1e-4)
    assert g["fallback_reasons"] == {"no box found": 1}
    assert g["iou"]["mean"] == pytest.approx((1 + 0.25 + 0) / 3, abs=1e-4)
    assert g["hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    c = M.cost(rows)
    assert c["mean_turns"] == 2 and c["mean_visual_tokens"] == 150 and c["seconds_per_sample"] == 0.75


def test_avg_at_k_and_crop_dependency() -> None:
    rows = [_row(i, i < 2, repeat=0) for i in range(4)] + [_row(i, i < 3, repeat=1) for i in range(4)]
    k = M.avg_at_k(rows)
    assert k["k"] == 2 and k["avg"] == pytest.approx(62.5)
    assert k["ci95"] == pytest.approx([62.5 - 1.96 * 17.678 / 2**0.5, 62.5 + 1.96 * 17.678 / 2**0.5], abs=0.02)
    grounded = [_row(i, i < 3) for i in range(4)]
    direct = [_row(i, i in (0, 3)) for i in range(4)]
    dep = M.crop_dependency(grounded, direct)
    assert dep["gained_with_crop"] == 2 and dep["lost_with_crop"] == 1 and dep["paired"] == 4


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(5, 0) == pytest.approx(0.0625)
    assert mcnemar_exact(0, 0) == 1.0
    assert math.isclose(mcnemar_exact(3, 3), 1.0)


# ---------------------------------------------------------------------------------------------------------------
# One metrics path: results.json (task_accuracy), lmms-eval's aggregates and `mgpo compare` agree

PAPER_MMERW_LITE = {"Perception/OCR": 86.4, "Perception/RS": 54.0, "Perception/DT": 78.0, "Perception/MO": 46.7,
                    "Perception/AD": 44.0, "Reasoning/OCR": 74.0, "Reasoning/DT": 69.0, "Reasoning/MO": 52.7,
                    "Reasoning/AD": 39.3}  # fmt: skip


def _paper_rows(n: int = 1000) -> list[dict]:
    rows = []
    for category, rate in PAPER_MMERW_LITE.items():
        size = 2 * n if category.endswith("OCR") else n  # unequal sizes: micro and macro differ
        k = round(rate * size / 100)
        rows += [_row(len(rows) + i, i < k, category) for i in range(size)]
    return rows


def test_unscored_rows_are_excluded_and_counted() -> None:
    rows = [_row(0, True), _row(1, False), _row(2, None), _row(3, None, "b")]
    out = M.task_accuracy(rows)
    assert out["overall"]["accuracy"] == 50.0 and out["overall"]["n"] == 2 and out["unscored"] == 2
    assert out["overall"]["kind"] == "micro" and "b" not in out["categories"]
    assert M.avg_at_k([*rows, _row(0, True, repeat=1), _row(1, True, repeat=1)])["per_repeat"] == [50.0, 100.0]


def test_paper_row_gives_60_45_through_every_path(tmp_path) -> None:
    from mgpo.eval.compare import compare_runs
    from mgpo.eval.run_log import RunLog
    from mgpo.eval.tasks import aggregate_accuracy, aggregate_macro

    rows = _paper_rows()
    results = M.task_accuracy(rows, macro=True)
    assert results["overall"]["accuracy"] == pytest.approx(60.45, abs=0.01)
    assert results["overall"]["kind"].startswith("macro") and results["micro"]["kind"] == "micro"
    items = [{"category": r["category"], "score": int(r["correct"]), "ground_truth": "A"} for r in rows]
    items.append({"category": "Perception/OCR", "score": 0, "ground_truth": ""})  # unscored, not wrong
    assert aggregate_macro(items) == results["overall"]["accuracy"]
    assert aggregate_accuracy(items) == results["micro"]["accuracy"]
    for name in ("a", "b"):
        rec = RunLog(tmp_path / name / "trajectories.jsonl")
        for r in rows:
            rec.write({**r, "task": "mgpo_mmerw_lite", "trajectory": {}})
            rec.write({**r, "task": "mgpo_mmerw_lite", "repeat": 1, "correct": False, "trajectory": {}})
    table = compare_runs([tmp_path / "a", tmp_path / "b"]).table
    assert table.loc[("mgpo_mmerw_lite", "overall"), "a"] == round(results["overall"]["accuracy"], 2)  # macro, unpooled
