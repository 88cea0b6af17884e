"""`mgpo show` as a user runs it: a real process, output redirected to a file, colour detection, errors, exports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mgpo.view.halfblock import UPPER_HALF

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "COLORTERM", "TTY_COMPATIBLE")}
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color", COLUMNS="120", LINES="40", **extra)
    return env


def _mgpo(*args: str, stdout=subprocess.PIPE, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mgpo.cli", *args],
        stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, env=_env(**env), text=True, timeout=60,
    )  # fmt: skip


def test_redirected_to_a_file_is_plain_text(eval_run, tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:  # mgpo show FILE > out.txt
        result = _mgpo("show", str(eval_run.path), stdout=fh)
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert "\x1b" not in text and UPPER_HALF not in text
    for traj in eval_run.trajectories:
        assert traj.question in text and f"image {traj.image_path}" in text
    box = eval_run.trajectories[0].turns[0].box_original
    assert "box (original)  [{}, {}, {}, {}]".format(*box) in text
    assert "s2 · vstar_pos · position" in text and "accuracy 1/3" in text


def test_filters_reach_the_library(eval_run):
    result = _mgpo("show", str(eval_run.path), "--failed", "--task", "vstar_attr")
    assert result.returncode == 0, result.stderr
    assert "s3 · vstar_attr" in result.stdout and "s1 ·" not in result.stdout and "s2 ·" not in result.stdout


def test_colour_terminals_get_truecolor_or_256_colour_pictures(eval_run):
    true = _mgpo("show", str(eval_run.path), "--index", "0", FORCE_COLOR="1", COLORTERM="truecolor")
    assert true.returncode == 0, true.stderr
    assert UPPER_HALF in true.stdout and "38;2;230;25;75" in true.stdout  # turn 1's box colour
    fallback = _mgpo("show", str(eval_run.path), "--index", "0", FORCE_COLOR="1")  # TERM=xterm-256color only
    assert UPPER_HALF in fallback.stdout and "38;5;" in fallback.stdout and "38;2;" not in fallback.stdout


def test_user_errors_are_one_line_on_stderr(eval_run, tmp_path):
    for args, message in [
        (["show", str(tmp_path / "none.jsonl")], "none.jsonl: no such file"),
        (["show", str(eval_run.path), "--failed", "--correct"], "--failed and --correct exclude each other"),
        (["show", str(eval_run.path), "--index", "9"], "--index 9 is out of range"),
    ]:
        result = _mgpo(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_exports_write_files(eval_run, tmp_path):
    result = _mgpo("show", str(eval_run.path), "--png", str(tmp_path / "p.png"), "--html", str(tmp_path / "a.html"))
    assert result.returncode == 0, result.stderr
    written = [line.removeprefix("wrote ") for line in result.stdout.splitlines()]
    assert written == [str(tmp_path / f"p-00{i}.png") for i in (1, 2, 3)] + [str(tmp_path / "a.html")]
    assert all(Path(p).stat().st_size > 1000 for p in written)


def test_infer_prints_the_same_view(eval_run, tmp_path, monkeypatch):
    # in-process (CliRunner): a subprocess would import transformers again, which costs seconds
    from typer.testing import CliRunner

    from mgpo.cli import app

    traj = eval_run.trajectories[0]
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"turns": [t.output for t in traj.turns]}) + "\n", encoding="utf-8")
    args = ["infer", str(eval_run.images["s1"]), traj.question, *(a for c in traj.choices for a in ("-c", c))]
    args += ["--ground-truth", "A", "--backend", "scripted", "--responses", str(responses)]
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    plain = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert plain.exit_code == 0, plain.output
    assert "\x1b" not in plain.stdout and UPPER_HALF not in plain.stdout
    assert "box (original)  [{}, {}, {}, {}]".format(*traj.turns[0].box_original) in plain.stdout
    coloured = CliRunner().invoke(app, args, env={"FORCE_COLOR": "1", "COLORTERM": "truecolor", "COLUMNS": "120"})
    assert coloured.exit_code == 0, coloured.output
    assert UPPER_HALF in coloured.stdout and "38;2;230;25;75" in coloured.stdout and "turn 1 crop" in coloured.stdout
