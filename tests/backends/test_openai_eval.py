"""`mgpo eval --backend openai` against a real `transformers serve` on 127.0.0.1, including the server going away
mid-run: one clear error, the finished samples kept, and `--resume` completing the run once the server is back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mgpo.eval.run_log import read_rows
from mgpo.eval.synth import write_synth

from .serving import free_port, transformers_server

pytestmark = pytest.mark.slow

N = 10
# small pixel limits keep the tiny model's vision tower quick on CPU; the protocol is otherwise the paper's
FAST = ["--min-pixels", "12544", "--max-pixels", "50176", "--crop-min-pixels", "12544", "--crop-max-pixels", "50176",
        "--max-new-tokens", "6"]  # fmt: skip


def eval_cmd(data: Path, model: Path, url: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mgpo.cli", "eval", "--task", "mgpo_vstar", "--data", str(data), "--backend",
            "openai", "--base-url", url, "--model", str(model), "--limit", str(N), "--output-dir", str(out), *FAST,
            *extra]  # fmt: skip


def env() -> dict[str, str]:
    e = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    e.pop("MGPO_DEBUG", None)
    return e


def rows_in(out: Path) -> int:
    path = out / "trajectories.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_eval_against_server_survives_the_server_stopping(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    write_synth(data, n=N, seed=3)
    port = free_port()
    log = tmp_path / "serve.log"
    full, cut = tmp_path / "full", tmp_path / "cut"

    with transformers_server(tiny_model_dir, port, log) as url:
        done = subprocess.run(eval_cmd(data, tiny_model_dir, url, full), capture_output=True, text=True, env=env(),
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert rows_in(full) == N

        # the same run again, with the server stopped once a few samples are in
        proc = subprocess.Popen(eval_cmd(data, tiny_model_dir, url, cut), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env())  # fmt: skip
        deadline = time.monotonic() + 300
        while rows_in(cut) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the eval finished before the server could be stopped"
    # leaving the block stopped the server mid-run
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--resume" in errors[0], stderr[-3000:]
    finished = [r for r in read_rows(cut / "trajectories.jsonl") if not r["trajectory"]["error"]]
    assert 3 <= len(finished) < N

    with transformers_server(tiny_model_dir, port, log) as url:
        resumed = subprocess.run(eval_cmd(data, tiny_model_dir, url, cut, "--resume"), capture_output=True,
                                 text=True, env=env(), timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a = {r["doc_id"]: r for r in read_rows(full / "trajectories.jsonl")}
    b = {r["doc_id"]: r for r in read_rows(cut / "trajectories.jsonl")}
    assert sorted(a) == sorted(b) and len(a) == N
    assert all(r["trajectory"]["error"] is None for r in b.values())
    assert {k: r["response"] for k, r in a.items()} == {k: r["response"] for k, r in b.items()}
