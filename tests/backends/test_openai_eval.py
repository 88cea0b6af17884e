"""`mgpo eval --backend openai` against a real `transformers serve` on 127.0.0.1, including the server going away
mid-run: one clear error, the finished samples kept, and `--resume` completing the run once the server is back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgpo.eval.run_log import read_rows
from mgpo.eval.synth import write_synth

from .serving import GateProxy, transformers_server

pytestmark = pytest.mark.slow

N = 10
# small pixel limits keep the tiny model's vision tower quick on CPU; the protocol is otherwise the paper's
FAST = ["--min-pixels", "12544", "--max-pixels", "50176", "--crop-min-pixels", "12544", "--crop-max-pixels", "50176",
        "--max-new-tokens", "6"]  # fmt: skip
KEPT = 3  # samples that finish before the server goes away
ONE_AT_A_TIME = ["--concurrency", "1", "--max-retries", "0"]  # so exactly KEPT samples finish, and failing is quick


def eval_cmd(data: Path, model: Path, url: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mgpo.cli", "eval", "--task", "mgpo_vstar", "--data", str(data), "--backend",
            "openai", "--base-url", url, "--model", str(model), "--limit", str(N), "--output-dir", str(out), *FAST,
            *extra]  # fmt: skip


def env() -> dict[str, str]:
    e = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    e.pop("MGPO_DEBUG", None)
    return e


def test_eval_against_server_survives_the_server_stopping(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    write_synth(data, n=N, seed=3)
    log = tmp_path / "serve.log"
    full, cut = tmp_path / "full", tmp_path / "cut"

    with transformers_server(tiny_model_dir, log) as url:
        done = subprocess.run(eval_cmd(data, tiny_model_dir, url, full), capture_output=True, text=True, env=env(),
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert len(read_rows(full / "trajectories.jsonl")) == N

        # the same run again, one request at a time, with the server gone after exactly 3 samples (6 requests)
        with GateProxy(url, budget=2 * KEPT) as gate:
            cut_run = subprocess.run(eval_cmd(data, tiny_model_dir, gate.url, cut, *ONE_AT_A_TIME),
                                     capture_output=True, text=True, env=env(), timeout=600)  # fmt: skip
            assert cut_run.returncode == 2, cut_run.stderr[-3000:]
            stderr = cut_run.stderr
            assert "Traceback" not in stderr
            errors = [line for line in stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "--resume" in errors[0], stderr[-3000:]
            finished = [r for r in read_rows(cut / "trajectories.jsonl") if not r["trajectory"]["error"]]
            assert len(finished) == KEPT

            gate.revive()  # the server is back
            resumed = subprocess.run(eval_cmd(data, tiny_model_dir, gate.url, cut, *ONE_AT_A_TIME, "--resume"),
                                     capture_output=True, text=True, env=env(), timeout=600)  # fmt: skip
            assert resumed.returncode == 0, resumed.stderr[-3000:]
            assert gate.forwarded == 2 * N  # the resume asked only for the samples that had not finished

    a = {r["doc_id"]: r for r in read_rows(full / "trajectories.jsonl")}
    b = {r["doc_id"]: r for r in read_rows(cut / "trajectories.jsonl")}
    assert sorted(a) == sorted(b) and len(a) == N
    assert all(r["trajectory"]["error"] is None for r in b.values())
    assert {k: r["response"] for k, r in a.items()} == {k: r["response"] for k, r in b.items()}
