"""A non-editable install carries everything `mgpo eval` needs: the wheel holds the task YAMLs as mgpo/tasks, and
eval runs from that install in a directory outside the checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def test_every_subpackage_is_listed() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "mgpo").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src") / "mgpo"
    # build from a copy of the tracked files, as a release would, so the checkout gets no build/ leftovers
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((REPO / name).read_bytes())
    proc = subprocess.run(
        [PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("mgpo-*.whl")
    return found


def test_wheel_carries_the_tasks(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for task in (REPO / "tasks").iterdir():
        if task.is_file() and task.suffix in (".yaml", ".py", ".jsonl", ""):
            assert f"mgpo/tasks/{task.name}" in names, task.name
    assert "mgpo/assets/qwen2_5_vl_chat_template.jinja" in names


def test_eval_from_an_installed_wheel_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    proc = subprocess.run(
        [PY, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {
        "PYTHONPATH": str(target),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }

    def mgpo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PY, "-m", "mgpo.cli", *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )

    where = subprocess.run(
        [PY, "-c", "import mgpo.eval.tasks as t; print(t.TASKS_DIR)"], cwd=work, env=env, capture_output=True, text=True
    )
    assert Path(where.stdout.strip()) == target / "mgpo" / "tasks", where.stderr
    assert mgpo("data", "synth", "--out", "synth", "--n", "4", "--seed", "1").returncode == 0
    turns = ['```json\n[{"bbox_2d": [100, 100, 400, 400], "label": "t"}]\n```', "\\boxed{A}"]
    ids = pd.read_parquet(work / "synth" / "test.parquet")["question_id"].tolist()
    (work / "r.jsonl").write_text("".join(json.dumps({"id": i, "turns": turns}) + "\n" for i in ids))
    proc = mgpo(
        "eval",
        "--task",
        "mgpo_vstar",
        "--data",
        "synth",
        "--backend",
        "scripted",
        "--responses",
        "r.jsonl",
        "--output-dir",
        "run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((work / "run" / "results.json").read_text())
    assert results["tasks"]["mgpo_vstar"]["overall"]["n"] == 4
