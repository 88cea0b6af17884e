"""Rich tables for `mgpo eval` results."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text


def _acc(acc: dict[str, Any] | None) -> str:
    if not acc or acc.get("accuracy") is None:
        return "-"
    return f"{acc['accuracy']:.1f}"


def _ci(acc: dict[str, Any] | None) -> str:
    ci = (acc or {}).get("ci95")
    return f"{ci[0]:.1f}-{ci[1]:.1f}" if ci else ""


def results_table(results: dict[str, Any]) -> Table:
    """One row per task (bold, its overall numbers, grounding and cost) and per category (indented): n, accuracy
    and its 95% interval. Fits 80 columns: task names and intervals never wrap; long category names fold."""
    table = Table(title="mgpo eval", show_lines=False, pad_edge=False)
    table.add_column("task / category", overflow="fold", min_width=16, max_width=28)
    for col in ("n", "acc %", "95% CI", "box ok", "IoU", "hit", "s/smp"):
        table.add_column(col, justify="right", no_wrap=True)

    def sub(label: str, n: Any, acc: str, ci: str = "") -> None:
        table.add_row(Text("  " + label, overflow="fold"), str(n), acc, ci, "", "", "", "")

    for task, entry in results["tasks"].items():
        g, c = entry["grounding"], entry["cost"]
        iou = g.get("iou") or {}
        table.add_row(
            Text(task, style="bold"), str(entry["overall"]["n"]), _acc(entry["overall"]), _ci(entry["overall"]),
            "-" if g["valid_box_ratio"] is None else f"{100 * g['valid_box_ratio']:.1f}%",
            "-" if not iou else f"{iou['mean']:.3f}", "-" if g["hit_rate"] is None else f"{100 * g['hit_rate']:.1f}%",
            f"{c.get('seconds_per_sample', 0):.2f}",
        )  # fmt: skip
        if "micro" in entry:
            sub("micro", entry["micro"]["n"], _acc(entry["micro"]), _ci(entry["micro"]))
        for cat, acc in entry["categories"].items():
            sub(cat, acc["n"], _acc(acc), _ci(acc))
        if entry.get("avg_at_k"):
            k = entry["avg_at_k"]
            sub(f"Avg@{k['k']}", "", f"{k['avg']:.1f}", f"± {k['std']:.1f}")
        if entry.get("ablation"):
            a = entry["ablation"]
            flips = f"+{a['gained_with_crop']}/-{a['lost_with_crop']}"  # answers the crop fixed / broke
            sub(f"direct {flips}", a["direct"]["n"], _acc(a["direct"]), _ci(a["direct"]))
        if entry["errors"]["count"]:
            sub("failed: wrong", entry["errors"]["count"], "")
    return table
