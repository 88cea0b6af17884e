"""Fixtures for the eval tests: a small synthetic V* dataset and scripted responses keyed by sample id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BOX_TURN = '```json\n[{"bbox_2d": [100, 100, 400, 400], "label": "target"}]\n```'
# small pixel budgets and short turns keep the tiny model fast on a shared CPU; the protocol code path is the same
FAST = ["--min-pixels", "3136", "--max-pixels", "50176", "--crop-min-pixels", "3136", "--crop-max-pixels", "50176",
        "--max-new-tokens", "8"]  # fmt: skip


def offline_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this checkout first, Hub offline, and any network attempt refused."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="", COLUMNS="160",
    )  # fmt: skip
    env.update(extra)
    return env


def run_cli(args: list[str], cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=offline_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 synthetic V*-schema samples written by the real CLI: `mgpo data synth --out d --n 20` (the Bar's data)."""
    out = tmp_path_factory.mktemp("synth") / "d"
    proc = run_cli([str(BIN / "mgpo"), "data", "synth", "--out", str(out), "--n", "20", "--seed", "0"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return out


def write_responses(path: Path, data_dir: Path, n_correct: int, reverse: bool = True) -> Path:
    """Scripted turns keyed by question id: the first n_correct answer the label, the rest a wrong letter."""
    frame = pd.read_parquet(data_dir / "test.parquet")
    lines = []
    for i, row in enumerate(frame.itertuples()):
        wrong = "B" if row.label != "B" else "A"
        answer = row.label if i < n_correct else wrong
        lines.append({"id": row.question_id, "turns": [BOX_TURN, f"The target is clear. \\boxed{{{answer}}}"]})
    if reverse:  # the file's order must not matter
        lines.reverse()
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture
def responses_for():
    """write_responses(path, data_dir, n_correct, reverse=True) -> path."""
    return write_responses


@pytest.fixture
def box_turn() -> str:
    return BOX_TURN


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """Helpers for subprocess tests: bin dir, repo, fast protocol flags, offline env, run()."""
    return SimpleNamespace(bin=BIN, repo=REPO, fast=FAST, env=offline_env, run=run_cli)


@pytest.fixture(scope="session")
def tiny_model_cli(tiny_model_dir: Path) -> Path:
    return tiny_model_dir
