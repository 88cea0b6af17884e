"""The eval results table reads at 80 columns: task names whole, each interval on one line."""

from __future__ import annotations

from rich.console import Console

from mgpo.eval.report import results_table


def _entry(categories: dict[str, dict]) -> dict:
    overall = {"n": 191, "accuracy": 75.39, "ci95": [68.83, 80.94]}
    return {
        "overall": overall,
        "categories": categories,
        "grounding": {"valid_box_ratio": 0.9476, "iou": {"mean": 0.3121}, "hit_rate": 0.6021},
        "cost": {"seconds_per_sample": 12.345},
        "errors": {"count": 2},
        "avg_at_k": {"k": 4, "avg": 74.2, "std": 1.3},
        "ablation": {"direct": overall, "gained_with_crop": 12, "lost_with_crop": 3},
    }


def test_results_table_fits_80_columns():
    cats = {"Remote Sensing/position and color of a long category": {"n": 10, "accuracy": 50.0, "ci95": [23.7, 76.3]}}
    results = {"tasks": {"mgpo_mmerw_lite": _entry(cats), "mgpo_hrbench8k": _entry({})}}
    console = Console(width=80, record=True, color_system=None)
    console.print(results_table(results))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("mgpo_mmerw_lite" in line for line in lines) and any("mgpo_hrbench8k" in line for line in lines)
    assert sum("68.8-80.9" in line for line in lines) >= 2  # each interval whole on one line
