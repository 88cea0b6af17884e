"""Real processes, offline, on CPU with the tiny model: the Bar command, the real `lmms-eval` CLI, and a run killed
mid-way then resumed, compared with an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stop_point import kill_at_stop, stop_env

from mgpo.eval.run_log import read_rows


@pytest.fixture(scope="module")
def bar_run(synth_dir: Path, tiny_model_dir: Path, kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mgpo eval --task mgpo_vstar --data d --model <tiny> --limit 20 --output-dir o` (small pixel budget)."""
    out = tmp_path_factory.mktemp("bar") / "o"
    args = [str(kit.bin / "mgpo"), "eval", "--task", "mgpo_vstar", "--data", str(synth_dir), "--model",
            str(tiny_model_dir), "--limit", "20", "--output-dir", str(out), *kit.fast]  # fmt: skip
    proc = kit.run(args, cwd=kit.repo, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mgpo_vstar" in proc.stdout  # the results table
    return out


def test_bar_outputs(bar_run: Path) -> None:
    results = json.loads((bar_run / "results.json").read_text())
    task = results["tasks"]["mgpo_vstar"]
    assert task["overall"]["n"] == 20 and task["overall"]["accuracy"] is not None
    assert set(task["categories"]) == {"direct_attributes", "relative_position"}
    assert task["grounding"]["valid_box_ratio"] is not None and "iou" in task["grounding"]
    assert task["grounding"]["with_gt_boxes"] == 20
    assert task["cost"]["mean_turns"] >= 1 and task["cost"]["mean_visual_tokens"] > 0
    # (lmms-eval's aggregate against results.json is checked where the accuracy is known and not 0: scripted
    # outputs of 40%, 70% and 80% in test_scoring_agreement.py and test_scripted.py; the random tiny model scores 0)
    lines = (bar_run / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 20
    for line in lines:
        row = json.loads(line)
        assert {"task", "doc_id", "category", "trajectory", "prediction", "ground_truth"} <= set(row)
        assert Path(row["trajectory"]["image_path"]).is_file()


def test_lmms_eval_cli_offline(synth_dir: Path, tiny_model_dir: Path, kit, tmp_path: Path) -> None:
    """The real lmms-eval CLI finds `--model mgpo` through the entry point and the tasks through --include_path."""
    model_args = (
        f"pretrained={tiny_model_dir},backend=hf,device=cpu,min_pixels=3136,max_pixels=50176,crop_min_pixels=3136,"
        f"crop_max_pixels=50176,max_new_tokens=8,trajectories={tmp_path}/t.jsonl"
    )
    out = str(tmp_path / "out")
    args = [str(kit.bin / "lmms-eval"), "--model", "mgpo", "--model_args", model_args, "--tasks", "mgpo_vstar",
            "--include_path", "tasks", "--limit", "2", "--output_path", out, "--log_samples"]  # fmt: skip
    proc = kit.run(args, cwd=kit.repo, timeout=600, MGPO_DATA=str(synth_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mgpo_vstar" in proc.stdout and "accuracy" in proc.stdout
    assert list((tmp_path / "out").rglob("*_results.json")) and list((tmp_path / "out").rglob("*_samples_*.jsonl"))
    assert len(read_rows(tmp_path / "t.jsonl")) == 2


def test_kill_and_resume_equals_uninterrupted(bar_run: Path, synth_dir: Path, tiny_model_dir: Path, kit,
                                              tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "o"
    args = [str(kit.bin / "mgpo"), "eval", "--task", "mgpo_vstar", "--data", str(synth_dir), "--model",
            str(tiny_model_dir), "--limit", "8", "--output-dir", str(out), *kit.fast]  # fmt: skip
    traj = out / "trajectories.jsonl"
    # killed right after the 3rd row is flushed: the run stops itself there (see tests/stop_point.py)
    env = stop_env(kit.env(), tmp_path / "hook", "mgpo.eval.run_log:RunLog.write", calls=3)
    kill_at_stop(args, env, kit.repo, tmp_path / "killed.log")
    assert len(read_rows(traj)) == 3 and len(traj.read_bytes().splitlines()) == 3
    resumed = kit.run([*args, "--resume"], cwd=kit.repo, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = traj.read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    assert len(lines) == 8 and len({r["doc_id"] for r in rows}) == 8  # nothing lost, nothing doubled
    reference = {r["doc_id"]: r for r in read_rows(bar_run / "trajectories.jsonl") if r["doc_id"] < 8}
    for row in rows:
        ref = reference[row["doc_id"]]
        assert (row["response"], row["prediction"], row["correct"]) == (
            ref["response"],
            ref["prediction"],
            ref["correct"],
        )
    results = json.loads((out / "results.json").read_text())["tasks"]["mgpo_vstar"]
    expected = 100 * sum(r["correct"] for r in reference.values()) / 8
    assert results["overall"]["accuracy"] == pytest.approx(expected)
    assert results["lmms_eval"]["accuracy,none"] == pytest.approx(expected)


def test_sampled_repeats_are_a_real_avg_at_k_and_reproducible(synth_dir: Path, tiny_model_dir: Path, kit,
                                                              tmp_path: Path) -> None:  # fmt: skip
    """`--sampling paper --repeats 2`: the repeats differ, and another batch size gives the same trajectories."""

    def run(name: str, batch: str) -> Path:
        out = tmp_path / name
        args = [str(kit.bin / "mgpo"), "eval", "--task", "mgpo_vstar", "--data", str(synth_dir), "--model",
                str(tiny_model_dir), "--limit", "3", "--repeats", "2", "--sampling", "paper", "--seed", "5",
                "--batch-size", batch, "--output-dir", str(out), *kit.fast]  # fmt: skip
        proc = kit.run(args, cwd=kit.repo, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return out

    a, b = run("a", "1"), run("b", "3")
    results = json.loads((a / "results.json").read_text())
    assert results["config"]["sampling"] == {"temperature": 1.0, "top_p": 1.0, "seed": 5, "mode": "sampled"}
    avg = results["tasks"]["mgpo_vstar"]["avg_at_k"]
    assert avg["k"] == 2 and avg["ci95"][0] <= avg["avg"] <= avg["ci95"][1]

    def outputs(out: Path) -> dict:
        return {(r["doc_id"], r["repeat"]): [t["output"] for t in r["trajectory"]["turns"]]
                for r in read_rows(out / "trajectories.jsonl")}  # fmt: skip

    first = outputs(a)
    assert first == outputs(b)  # batch size 1 and 3: the same draws
    assert any(first[(d, 0)] != first[(d, 1)] for d in range(3))  # repeats really sample anew
    row = read_rows(a / "trajectories.jsonl")[0]
    assert row["trajectory"]["meta"]["sampling"]["mode"] == "sampled"
