"""User text is never rich markup: paths, questions, ids, categories and run names that look like markup tags print
exactly as given, in error lines, the trajectory view and `mgpo compare`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image
from rich.console import Console

from mgpo.eval.compare import compare_runs, print_comparison
from mgpo.types import Sample
from mgpo.view.records import load_records
from mgpo.view.show import print_records

MARKUP_LIKE = ["a[/b].png", "scan[final].png", "[bold]x[/bold].png", "[link=x]y.png"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "300"}
    env.pop("MGPO_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "mgpo.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_error_lines_print_paths_as_given(tmp_path: Path) -> None:
    for name in MARKUP_LIKE:
        result = run_cli("infer", name, "q?", "--backend", "scripted", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
        assert result.stderr.strip() == f"error: {name}: no such file; check the path", result.stderr


def _console() -> Console:
    return Console(file=io.StringIO(), width=300, force_terminal=False)


def _rows(tmp_path: Path, doc_category: str) -> list[dict]:
    from mgpo.engine import build_engine

    image = tmp_path / "[red]pic.png"
    Image.new("RGB", (600, 400), (20, 30, 40)).save(image)
    turns = ['```json\n[{"bbox_2d": [10, 10, 300, 200], "label": "[b]x"}]\n```', "[/] \\boxed{A} [bold]"]
    engine = build_engine("scripted", responses=[{"turns": turns}])
    sample = Sample(image, "What is [bold]this[/bold]? [/]", ["[i]a", "b[/i]"], "A", id="[dim]id[/dim]")
    traj = engine.run([sample])[0]
    row = {"task": "mgpo_vstar", "doc_id": 0, "category": doc_category, "trajectory": traj.to_dict(),
           "prediction": traj.answer, "ground_truth": "A", "correct": traj.correct,
           "question_id": "[dim]id[/dim]"}  # fmt: skip
    return [row]


def test_the_trajectory_view_prints_user_text_as_given(tmp_path: Path) -> None:
    path = tmp_path / "trajectories.jsonl"
    rows = _rows(tmp_path, "[red]colour[/red]")
    rows[0]["doc_id"] = "[dim]id[/dim]"  # the name a record is shown under
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * 2), encoding="utf-8")
    console = _console()
    print_records(load_records(path), console)  # two records: each gets a rule naming it
    out = console.file.getvalue()
    for text in ("What is [bold]this[/bold]? [/]", "[i]a", "b[/i]", "[red]pic.png", "[/] \\boxed{A} [bold]",
                 "[red]colour[/red]", "2/2 [dim]id[/dim]"):  # fmt: skip
        assert text in out, text


def test_compare_prints_names_as_given(tmp_path: Path) -> None:
    runs = []
    for name in ("base[x]", "[bold]new"):
        run = tmp_path / name
        run.mkdir()
        (run / "trajectories.jsonl").write_text(json.dumps(_rows(tmp_path, "[red]colour[/red]")[0]) + "\n")
        runs.append(run)
    console = _console()
    print_comparison(compare_runs(runs), console)
    out = console.file.getvalue()
    assert "base[x]" in out and "[bold]new" in out and "[red]colour[/red]" in out
