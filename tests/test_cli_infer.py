"""`mgpo infer` and `mgpo tiny-model` end to end, through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

MGPO = [sys.executable, "-m", "mgpo.cli"]
TURN1 = '```json\n[{"bbox_2d": [100, 50, 400, 300], "label": "cup"}]\n```'


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    return subprocess.run([*MGPO, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture
def big_png(tmp_path: Path) -> Path:
    path = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000), (200, 180, 160)).save(path)
    return path


@pytest.mark.slow
def test_tiny_model_infer_writes_trajectory_and_overlay(tmp_path: Path, big_png: Path) -> None:
    model = tmp_path / "T"
    made = run("tiny-model", str(model))
    assert made.returncode == 0, made.stderr
    out = tmp_path / "out"
    done = run("infer", str(big_png), "What is the color of the cup?", "--choice", "red", "--choice", "blue",
               "--model", str(model), "--save-dir", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    traj = json.loads((out / "trajectory.json").read_text())
    assert len(traj["turns"]) == 2 and traj["turns"][0]["frame_size"] == [1148, 868]
    assert Image.open(out / "overlay.png").size == (2048, 1536)
    assert "turn 1" in done.stdout and "turn 2" in done.stdout


def test_scripted_worked_example_through_the_cli(tmp_path: Path, big_png: Path) -> None:
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"turns": [TURN1, "It is red. \\boxed{A}"]}) + "\n")
    out = tmp_path / "out"
    done = run("infer", str(big_png), "What is the color of the cup?", "-c", "red", "-c", "blue",
               "--backend", "scripted", "--responses", str(responses), "--save-dir", str(out), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    traj = json.loads(done.stdout)  # --json: stdout is exactly the trajectory
    first = traj["turns"][0]
    assert first["frame_size"] == [1148, 868]
    assert first["box_original"] == [348, 172, 1393, 1036]
    assert Image.open(out / "crop_turn1.png").size == (1045, 864)
    assert traj["answer"] == "A" and traj["image_path"] == str(big_png)
    assert json.loads((out / "trajectory.json").read_text()) == traj


@pytest.mark.parametrize(("flags", "correct"), [([], False), (["--scoring", "letter", "--parsing", "lenient"], True)])
def test_protocol_options_from_the_cli_are_recorded(tmp_path: Path, big_png: Path, flags: list, correct: bool) -> None:
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"turns": [TURN1, "The answer is A."]}) + "\n")
    done = run("infer", str(big_png), "Colour?", "-c", "red", "-c", "blue", "--ground-truth", "A", "--backend",
               "scripted", "--responses", str(responses), "--image-mode", "upright", "--json", *flags)  # fmt: skip
    assert done.returncode == 0, done.stderr
    traj = json.loads(done.stdout)
    assert traj["protocol"]["image_mode"] == "upright" and traj["correct"] is correct
    assert traj["protocol"]["scoring"] == ("letter" if flags else "paper")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--backend", "scripted", "--responses", "/nonexistent.jsonl"], "responses file not found"),
        (["--model", "/nonexistent/model"], "model directory not found"),
        (["--box-policy", "shrink", "--backend", "scripted"], "box_policy must be one of"),
        (["--backend", "nope"], "unknown backend"),
        (["--scoring", "judge", "--backend", "scripted"], "scoring must be one of"),
        (["--image-mode", "exif", "--backend", "scripted"], "image_mode must be one of"),
    ],
)
def test_user_mistakes_are_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    image = tmp_path / "x.png"
    Image.new("RGB", (300, 300)).save(image)
    done = run("infer", str(image), "q?", *args)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_bad_image_fails_before_loading_a_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    done = run("infer", str(bad), "q?", "--model", "Qwen/Qwen2.5-VL-7B-Instruct")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {bad}: file is empty (0 bytes); give a PNG, JPEG or other "
                                                "image file"]  # fmt: skip
