"""The bar: `mgpo train` on a V*-schema set with the tiny model, offline on CPU; its output loads in `mgpo infer`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from stop_point import kill_at_stop, stop_env
from train_helpers import SMALL, write_images
from typer.testing import CliRunner

from mgpo.cli import app
from mgpo.errors import MgpoError

PIXELS = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def vstar_set(tmp_path):
    folder = tmp_path / "vstar"
    folder.mkdir()
    rows = [{"image": name, "text": "What is the colour of the square? (A) red (B) blue (C) white (D) black",
             "label": "A", "category": "direct_attributes", "question_id": i}
            for i, name in enumerate(write_images(folder, 3))]  # fmt: skip
    pd.DataFrame(rows).to_parquet(folder / "test.parquet")
    return folder


def test_train_two_steps_then_infer_loads_the_output_then_resume(vstar_set, tiny_model_dir, tmp_path, capfd):
    out = tmp_path / "o"
    runner = CliRunner()
    args = ["train", "--algo", "mgpo", "--data", str(vstar_set), "--model", str(tiny_model_dir), "--max-steps", "2",
            "--output-dir", str(out), "--num-generations", "4", "--batch-size", "4", "--save-steps", "1",
            "--turn-max-new-tokens", "24", *PIXELS]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "trained 2 step(s)" in result.output
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    per_step = [s for s in steps if "reward" in s]
    assert [s["step"] for s in per_step] == [1, 2]
    for s in per_step:
        assert "reward_std" in s and "mgpo/valid_box_ratio" in s and "mgpo/fallback_rate" in s
    assert {"config.json", "model.safetensors", "processor_config.json", "generation_config.json"} <= {
        p.name for p in out.iterdir()}  # fmt: skip
    assert (out / "checkpoint-1").is_dir() and (out / "checkpoint-2").is_dir()
    card = (out / "README.md").read_text()
    assert f"base_model: {tiny_model_dir}" in card and "--algo mgpo" in card and "[None]" not in card
    # one line per step: mgpo's, not also the Trainer's raw logs dict
    printed = result.output + "".join(capfd.readouterr())
    assert [ln.split(":")[0] for ln in printed.splitlines() if ln.startswith("step ")] == ["step 1", "step 2"], printed
    assert "'loss'" not in printed and "{'" not in printed

    image = vstar_set / "img_0.png"
    result = runner.invoke(app, ["infer", str(image), "What colour?", "-c", "red", "-c", "blue", "--model", str(out),
                                 "--device", "cpu", "--json", *PIXELS])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    traj = json.loads(result.output[result.output.index("{") :])
    assert len(traj["turns"]) == 2 and traj["error"] is None

    resumed = runner.invoke(app, [*args[: -len(PIXELS)], "--resume", str(out / "checkpoint-1"), *PIXELS])
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert "trained 2 step(s)" in resumed.output
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "reward" in s] == [1, 2, 2]  # the resumed run trained step 2 only

    fresh = runner.invoke(app, args)  # a fresh run in the same directory starts a fresh log
    assert fresh.exit_code == 0, fresh.output + repr(fresh.exception)
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "reward" in s] == [1, 2]


def test_train_killed_after_the_first_checkpoint_resumes_from_it_and_finishes(vstar_set, tiny_model_dir, tmp_path,
                                                                             capfd):  # fmt: skip
    """SIGKILL of `mgpo train` right after checkpoint-1 is saved (the run stops itself there, see
    tests/stop_point.py), then `--resume latest` trains steps 2..3 only, and the final model loads in `mgpo infer`."""
    out = tmp_path / "o"
    args = ["train", "--algo", "mgpo", "--data", str(vstar_set), "--model", str(tiny_model_dir), "--max-steps", "3",
            "--output-dir", str(out), "--num-generations", "4", "--batch-size", "4", "--save-steps", "1",
            "--turn-max-new-tokens", "24", *PIXELS]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env = stop_env(env, tmp_path / "hook", "mgpo.train.trainer:MGPOTrainer._save_checkpoint", calls=1)
    kill_at_stop([str(Path(sys.executable).with_name("mgpo")), *args], env, REPO, tmp_path / "killed.log")
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    assert not (out / "checkpoint-2").exists() and not (out / "model.safetensors").exists()  # killed mid-run
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "reward" in s] == [1]
    capfd.readouterr()

    resumed = CliRunner().invoke(app, [*args, "--resume", "latest"])
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    assert "trained 3 step(s)" in resumed.output
    printed = resumed.output + "".join(capfd.readouterr())
    assert [ln.split(":")[0] for ln in printed.splitlines() if ln.startswith("step ")] == ["step 2", "step 3"]
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "reward" in s] == [1, 2, 3]  # appended to the killed run's log
    assert (out / "checkpoint-3").is_dir() and (out / "model.safetensors").is_file()

    image = vstar_set / "img_0.png"
    result = CliRunner().invoke(app, ["infer", str(image), "What colour?", "-c", "red", "-c", "blue", "--model",
                                      str(out), "--device", "cpu", "--json", *PIXELS])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    traj = json.loads(result.output[result.output.index("{") :])
    assert len(traj["turns"]) == 2 and traj["error"] is None


def _unloadable_model(tmp_path):
    """A directory that passes the cheap checks but that no loader could load: reaching the model fails."""
    folder = tmp_path / "unloadable"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "not_a_model"}')
    return str(folder)


def test_a_wrong_resume_fails_before_the_model_is_loaded(vstar_set, tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(vstar_set), "--model", _unloadable_model(tmp_path),
                                      "--output-dir", str(tmp_path / "o"), "--resume", "latest"])  # fmt: skip
    assert isinstance(result.exception, MgpoError)
    assert "no checkpoint-N folder to resume from" in str(result.exception)  # not the missing model


def test_bad_data_fails_before_the_model_is_loaded(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"question": "q", "answer": "A"}) + "\n")
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "d.jsonl"), "--model",
                                      _unloadable_model(tmp_path)])  # fmt: skip
    assert isinstance(result.exception, MgpoError)
    assert "missing column(s)" in str(result.exception)  # the data error, not the missing model
