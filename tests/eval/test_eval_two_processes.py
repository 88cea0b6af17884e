"""`mgpo eval` under two real CPU processes gives the same per-sample results as one process.

lmms-eval hands each rank its share of the docs (and pads the shorter share with a filler request); each rank records
its samples in its own part file, and rank 0 merges them into trajectories.jsonl and writes results.json. Launched
by tests/ddp_launch.py, as tests/train/test_train_ddp.py is: `accelerate launch --multi_gpu` (on a machine without
GPUs, --cpu starts ONE process), a gloo group, a free rendezvous port (retried when another process took it). An odd
--limit makes the shares uneven, so the filler is exercised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ddp_launch import launch

from mgpo.eval.run_log import read_rows

LIMIT = 9  # 5 docs on rank 0, 4 and the filler on rank 1


def _lmms_eval_args(kit, responses: Path, trajectories: Path, out: Path) -> list[str]:
    """The raw lmms-eval CLI with mgpo's model, recording trajectories through model_args."""
    model_args = f"backend=scripted,responses={responses},trajectories={trajectories}"
    return [str(kit.bin / "lmms-eval"), "--model", "mgpo", "--model_args", model_args, "--tasks", "mgpo_vstar",
            "--include_path", "tasks", "--limit", str(LIMIT), "--output_path", str(out)]  # fmt: skip


def _eval_args(synth_dir: Path, responses: Path, out: Path) -> list[str]:
    return ["eval", "--task", "mgpo_vstar", "--data", str(synth_dir), "--backend", "scripted", "--responses",
            str(responses), "--model", "unused", "--limit", str(LIMIT), "--ablate",
            "--output-dir", str(out)]  # fmt: skip


def _per_sample(out: Path) -> dict[tuple, tuple]:
    rows = read_rows(out / "trajectories.jsonl")
    return {(r["mode"], r["task"], r["doc_id"], r["repeat"]): (r["response"], r["prediction"], r["correct"])
            for r in rows}  # fmt: skip


@pytest.mark.slow
def test_two_processes_give_the_per_sample_results_of_one(synth_dir, kit, tmp_path, responses_for) -> None:
    responses = responses_for(tmp_path / "r.jsonl", synth_dir, n_correct=6)
    one, two = tmp_path / "one", tmp_path / "two"
    proc = kit.run([str(kit.bin / "mgpo"), *_eval_args(synth_dir, responses, one)], cwd=kit.repo)
    assert proc.returncode == 0, proc.stderr[-3000:]

    args = [str(kit.bin / "mgpo"), *_eval_args(synth_dir, responses, two)]
    proc = launch(lambda cmd: kit.run(cmd, cwd=kit.repo, OMP_NUM_THREADS="1"), args)  # retried if its port was taken
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("mgpo_vstar") == 1  # one results table: rank 0 reports the merged run

    assert not list(two.glob("trajectories.rank*.jsonl"))  # the parts were merged and removed
    lines = (two / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 2 * LIMIT  # every doc once per mode: no doc twice, no filler row
    single, double = _per_sample(one), _per_sample(two)
    assert len(single) == 2 * LIMIT and double == single
    assert sum(bool(v[2]) for k, v in single.items() if k[0] == "grounded") == 6

    a = json.loads((one / "results.json").read_text())["tasks"]["mgpo_vstar"]
    b = json.loads((two / "results.json").read_text())["tasks"]["mgpo_vstar"]
    assert b["overall"] == a["overall"] and b["categories"] == a["categories"] and b["ablation"] == a["ablation"]
    assert a["overall"]["n"] == LIMIT and a["overall"]["accuracy"] == pytest.approx(100 * 6 / LIMIT)
    # lmms-eval's own aggregate, gathered over both ranks, agrees too
    assert b["lmms_eval"]["accuracy,none"] == a["lmms_eval"]["accuracy,none"] == pytest.approx(100 * 6 / LIMIT)


def _rows(path: Path) -> dict[tuple, tuple]:
    rows = read_rows(path)
    return {(r["task"], r["doc_id"], r["repeat"]): (r["response"], r["prediction"], r["correct"]) for r in rows}


@pytest.mark.slow
def test_the_lmms_eval_cli_under_two_processes_merges_the_ranks_trajectories(synth_dir, kit, tmp_path,
                                                                             responses_for) -> None:  # fmt: skip
    """`accelerate launch lmms-eval --model mgpo --model_args ...,trajectories=t.jsonl`: each rank appends to its own
    part (two processes appending to one file would interleave and tear rows), merged into t.jsonl at the end."""
    responses = responses_for(tmp_path / "r.jsonl", synth_dir, n_correct=6)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run = lambda cmd: kit.run(cmd, cwd=kit.repo, MGPO_DATA=str(synth_dir), OMP_NUM_THREADS="1")  # noqa: E731
    proc = run(_lmms_eval_args(kit, responses, one, tmp_path / "out1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = launch(run, _lmms_eval_args(kit, responses, two, tmp_path / "out2"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not list(tmp_path.glob("two.rank*.jsonl"))  # merged and removed
    assert len(two.read_text().splitlines()) == LIMIT  # every doc once, no filler row
    assert _rows(two) == _rows(one) and len(_rows(one)) == LIMIT
    assert sum(bool(v[2]) for v in _rows(two).values()) == 6
