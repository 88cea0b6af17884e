"""User mistakes through the real `mgpo` command: exit code 2, exactly one line, no traceback; and the mistakes that
need no model are found before lmms-eval, torch, transformers or TRL are imported (checked by what the process
imported, not by a clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("lmms_eval", "torch", "transformers", "trl", "datasets")

# runs the CLI in this process, then reports what it imported: the checks before the heavy imports are proven so
PROBE = f"""
import json, sys
HEAVY = {HEAVY!r}
from mgpo.cli import main
sys.argv = ["mgpo", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.write("\\nIMPORTED " + json.dumps([m for m in HEAVY if m in sys.modules]) + "\\n")
sys.exit(code)
"""


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    out = {**os.environ, "NO_COLOR": "1", "COLUMNS": "300", "PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    out.pop("MGPO_DEBUG", None)
    out.pop("MGPO_DATA", None)
    out.update(extra)
    return out


def probe(args: list[str], tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                          cwd=tmp_path, env=env(tmp_path, **extra), timeout=300)  # fmt: skip
    marker = proc.stdout.rfind("IMPORTED ")
    assert marker >= 0, proc.stderr[-2000:]
    return proc, json.loads(proc.stdout[marker + len("IMPORTED ") :])


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a user mistake prints: exit 2, stderr exactly one `error:` line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """One valid V*-schema row with its image."""
    d = tmp_path / "d"
    d.mkdir()
    Image.new("RGB", (640, 480), (90, 90, 90)).save(d / "a.png")
    row = {
        "id": "q0",
        "question": "What colour is the cup?",
        "choices": ["red", "blue"],
        "answer": "A",
        "image": "a.png",
    }
    (d / "test.jsonl").write_text(json.dumps(row) + "\n")
    return d


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["eval", "--task", "vstarr"], "unknown task 'vstarr'; did you mean --task mgpo_vstar?"),
        (["eval", "--task", "mgpo_vstr"], "unknown task 'mgpo_vstr'; did you mean --task mgpo_vstar?"),
        (["eval", "--task", "mgpo_vstar", "--model", "./no-such-model"], "./no-such-model: model directory not found"),
        (["train", "--algo", "ppo", "--data", "d"], "unknown --algo 'ppo'; use one of: mgpo, grpo, sft"),
        (["train", "--data", "d", "--model", "./no-such-model"], "./no-such-model: model directory not found"),
    ],
)
def test_mistakes_that_need_no_model_fail_before_the_heavy_imports(args, expected, data_dir, tmp_path) -> None:
    args = [str(data_dir) if a == "d" else a for a in args]
    proc, imported = probe(args, tmp_path)
    line = one_error_line(proc)
    assert expected in line, line
    assert imported == [], f"{line}: imported {imported} first"


def test_no_data_offline_names_the_fix(tmp_path: Path) -> None:
    """The hub dataset is not cached and the Hub is off: one line naming --data (was a tenacity RetryError)."""
    proc, imported = probe(["eval", "--task", "mgpo_vstar", "--backend", "scripted"], tmp_path)
    line = one_error_line(proc)
    assert "lmms-lab-encoder/vstar-bench" in line and "--data" in line and "offline" in line
    assert "lmms_eval" not in imported


def test_data_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not json\n")
    proc, imported = probe(["eval", "--task", "mgpo_vstar", "--data", str(bad), "--backend", "scripted"], tmp_path)
    assert f"{bad}:1: not valid JSON" in one_error_line(proc)
    assert imported == []


def test_ground_truth_past_the_choices(tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    Image.new("RGB", (640, 480)).save(image)
    args = ["infer", str(image), "Which?", "-c", "red", "-c", "blue", "--ground-truth", "Z", "--backend", "scripted"]
    proc, imported = probe(args, tmp_path)
    assert "--ground-truth 'Z': with 2 choice(s) the answer is a letter A-B" in one_error_line(proc)
    assert imported == []


def _absent_device() -> str:
    import torch

    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def test_a_cuda_device_this_machine_lacks(tiny_model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    device = _absent_device()
    image = data_dir / "a.png"
    infer = probe(["infer", str(image), "q?", "--model", str(tiny_model_dir), "--device", device], tmp_path)[0]
    assert f"--device {device}:" in one_error_line(infer)
    ev = probe(["eval", "--task", "mgpo_vstar", "--data", str(data_dir), "--model", str(tiny_model_dir),
                "--device", device, "-o", str(tmp_path / "o")], tmp_path)  # fmt: skip
    assert f"--device {device}:" in one_error_line(ev[0])
    assert "lmms_eval" not in ev[1]  # refused before lmms-eval loads
    assert not (tmp_path / "o" / "trajectories.jsonl").exists()


def test_plain_lmms_eval_with_unreadable_data_prints_one_line(tmp_path: Path) -> None:
    """The literal `lmms-eval --model mgpo` command: mgpo's line, not a RetryError after five retries."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"id": "q0", "turns": ["a"]}\n')
    args = [str(Path(sys.executable).parent / "lmms-eval"), "--model", "mgpo", "--model_args",
            f"backend=scripted,responses={responses}", "--tasks", "mgpo_vstar", "--include_path",
            str(REPO / "tasks"), "--limit", "1"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env(tmp_path, MGPO_DATA=str(bad)),
                          timeout=300)  # fmt: skip
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "RetryError" not in proc.stderr, proc.stderr[-2000:]
    assert (
        proc.stderr.strip().splitlines()[-1] == f"error: {bad}:1: not valid JSON (Expecting property name "
        "enclosed in double quotes); each line must be one row object"
    )


def test_mgpo_eval_unwraps_lmms_eval_retries(monkeypatch, tmp_path: Path, data_dir: Path) -> None:
    """A data error raised inside lmms-eval's task building reaches the user as mgpo's MgpoError, at once: the task
    builder runs once, not five times behind tenacity."""
    from mgpo.errors import MgpoError
    from mgpo.eval import tasks
    from mgpo.eval.runner import EvalOptions, run_eval

    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise MgpoError("the data went away")

    monkeypatch.setattr(tasks, "build_docs", broken)
    responses = tmp_path / "r.jsonl"
    responses.write_text('{"id": "q0", "turns": ["a"]}\n')
    opts = EvalOptions(tasks=["mgpo_vstar"], output_dir=tmp_path / "o", data=data_dir, backend="scripted",
                       responses=responses)  # fmt: skip
    with pytest.raises(MgpoError, match=r"^the data went away$"):
        run_eval(opts)
    assert len(calls) == 1
