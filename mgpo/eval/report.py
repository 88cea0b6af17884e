"""Rich tables for `mgpo eval` results."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(acc: dict[str, Any] | None) -> str:
    if not acc or acc.get("accuracy") is None:
        return "-"
    ci = acc.get("ci95")
    return f"{acc['accuracy']:.1f}" + (f"  [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def results_table(results: dict[str, Any]) -> Table:
    """One row per task and category: n, accuracy with its 95% interval; then grounding and cost per task."""
    table = Table(title="mgpo eval", show_lines=False)
    for col in ("task", "category", "n", "acc % [95% CI]", "valid box", "IoU", "hit", "s/sample"):
        table.add_column(col, justify="left" if col in ("task", "category") else "right")
    for task, entry in results["tasks"].items():
        g, c = entry["grounding"], entry["cost"]
        iou = g.get("iou") or {}
        table.add_row(
            f"[bold]{task}[/]", "overall", str(entry["overall"]["n"]), _fmt(entry["overall"]),
            "-" if g["valid_box_ratio"] is None else f"{100 * g['valid_box_ratio']:.1f}%",
            "-" if not iou else f"{iou['mean']:.3f}", "-" if g["hit_rate"] is None else f"{100 * g['hit_rate']:.1f}%",
            f"{c.get('seconds_per_sample', 0):.2f}",
        )  # fmt: skip
        if "micro" in entry:
            table.add_row("", "micro", str(entry["micro"]["n"]), _fmt(entry["micro"]), "", "", "", "")
        for cat, acc in entry["categories"].items():
            table.add_row("", cat, str(acc["n"]), _fmt(acc), "", "", "", "")
        if entry.get("avg_at_k"):
            k = entry["avg_at_k"]
            table.add_row("", f"Avg@{k['k']}", "", f"{k['avg']:.1f} ± {k['std']:.1f}", "", "", "", "")
        if entry.get("ablation"):
            a = entry["ablation"]
            table.add_row("", "direct (ablation)", str(a["direct"]["n"]), _fmt(a["direct"]),
                          f"+{a['gained_with_crop']}/-{a['lost_with_crop']} flips", "", "", "")  # fmt: skip
        if entry["errors"]["count"]:
            table.add_row("", "[red]failed samples[/]", str(entry["errors"]["count"]), "scored wrong", "", "", "", "")
    return table
