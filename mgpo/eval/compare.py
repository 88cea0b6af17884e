"""`mgpo compare RUN_DIR...`: per-category accuracy across runs, deltas against the first run, and an exact McNemar
test on the samples each run shares with the first (paired by task and doc id).

Accuracies come from mgpo.eval.metrics.task_accuracy, the function results.json uses: the first repeat only (repeats
are never pooled), unscored samples left out, and MME-RealWorld's overall the paper's macro mean."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mgpo.errors import MgpoError
from mgpo.eval.metrics import MACRO_TASKS, task_accuracy
from mgpo.eval.run_log import read_rows

TRAJECTORIES = "trajectories.jsonl"


@dataclass
class Comparison:
    """The accuracy table (rows: task/category, columns: runs), deltas to the first run, paired tests."""

    table: pd.DataFrame
    deltas: pd.DataFrame
    tests: pd.DataFrame


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b (only A right) and c (only B right)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """A run's grounded rows as a frame: task, category, doc_id, repeat, correct."""
    path = Path(run_dir) / TRAJECTORIES
    if not path.is_file():
        raise MgpoError(f"{run_dir}: no {TRAJECTORIES}; give run directories written by `mgpo eval`")
    rows = [r for r in read_rows(path) if r.get("mode", "grounded") == "grounded"]
    if not rows:
        raise MgpoError(f"{path}: no finished samples")
    frame = pd.DataFrame(
        [
            {
                "task": r["task"],
                "category": r.get("category") or "-",
                "doc_id": int(r["doc_id"]),
                "repeat": int(r.get("repeat", 0)),
                "correct": None if r.get("correct") is None else int(bool(r["correct"])),
            }
            for r in rows
        ]
    )
    return frame


def compare_runs(run_dirs: list[str | Path]) -> Comparison:
    """Compare runs; the first is the baseline for deltas and tests."""
    if len(run_dirs) < 2:
        raise MgpoError("give at least two run directories to compare")
    names = _names(run_dirs)
    frames = {name: load_run(d) for name, d in zip(names, run_dirs, strict=True)}
    columns = {}
    for name, f in frames.items():
        values: dict[tuple[str, str], float] = {}
        first = f[f["repeat"] == 0]
        for task, group in first.groupby("task"):
            pairs = zip(group.category, group.correct, strict=True)
            rows = [{"category": c, "correct": None if pd.isna(v) else v} for c, v in pairs]
            acc = task_accuracy(rows, macro=task in MACRO_TASKS)
            values[(task, "overall")] = acc["overall"]["accuracy"]
            values.update({(task, c): a["accuracy"] for c, a in acc["categories"].items()})
        columns[name] = pd.Series(values, dtype=float)
    table = pd.DataFrame(columns).round(2)
    table = table.loc[sorted(table.index, key=lambda k: (k[0], k[1] != "overall", k[1]))]  # overall first per task
    base = names[0]
    deltas = table[names[1:]].sub(table[base], axis=0).round(2)
    tests = []
    key = ["task", "doc_id", "repeat"]
    scored = {n: f[(f["repeat"] == 0) & f["correct"].notna()] for n, f in frames.items()}  # as the accuracies
    for name in names[1:]:
        merged = scored[base].merge(scored[name], on=key, suffixes=("_a", "_b"))  # shared samples only
        for task, group in merged.groupby("task"):
            b = int(((group.correct_a == 1) & (group.correct_b == 0)).sum())
            c = int(((group.correct_a == 0) & (group.correct_b == 1)).sum())
            tests.append({"run": name, "vs": base, "task": task, "shared": len(group), "only_baseline_right": b,
                          "only_run_right": c, "p_value": round(mcnemar_exact(b, c), 4)})  # fmt: skip
    return Comparison(table, deltas, pd.DataFrame(tests))


def _names(run_dirs: list[str | Path]) -> list[str]:
    names = [Path(d).name or str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    return names


def print_comparison(cmp: Comparison, console: Console) -> None:
    """Render the accuracy table with deltas, then the McNemar tests."""
    runs = list(cmp.table.columns)
    table = Table(title="accuracy % per task and category (delta vs first run)")
    table.add_column("task")
    table.add_column("category")
    for name in runs:
        table.add_column(Text(name), justify="right")
    for (task, category), row in cmp.table.iterrows():
        cells = []
        for name in runs:
            value = row[name]
            cell = "-" if pd.isna(value) else f"{value:.1f}"
            if name != runs[0] and not pd.isna(cmp.deltas.loc[(task, category), name]):
                d = cmp.deltas.loc[(task, category), name]
                cell += f" ({'+' if d >= 0 else ''}{d:.1f})"
            cells.append(cell)
        table.add_row(Text(str(task)), Text(str(category)), *cells)  # names are data, not markup
    console.print(table)
    tests = Table(title="McNemar (exact, two-sided) on shared samples")
    for col in ("run", "task", "shared", "only first right", "only run right", "p"):
        tests.add_column(col, justify="left" if col in ("run", "task") else "right")
    for t in cmp.tests.to_dict(orient="records"):
        tests.add_row(Text(str(t["run"])), Text(str(t["task"])), str(t["shared"]), str(t["only_baseline_right"]),
                      str(t["only_run_right"]), f"{t['p_value']:.4f}")  # fmt: skip
    console.print(tests)
