"""Two processes on CPU: the ranks form one DDP group, so after MGPO
steps their weights are identical (each rank's checksum, taken before the final save), and a
second launch resumes from the checkpoint under two processes and stays in sync.

On a machine without GPUs, `accelerate launch --num_processes 2 --cpu` (and without --cpu) starts ONE process
(accelerate's simple launcher; measured with accelerate 1.15): two CPU processes take `--multi_gpu`, which runs
torchrun and gives a MULTI_CPU (gloo) group. Each rank records its world size, so a one-process run fails here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    import socket

    with socket.socket() as s:  # torchrun's rendezvous needs a concrete port (0 is not accepted)
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(WORKER), *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_processes_keep_identical_weights_and_resume_in_sync(vqa_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    _launch([str(vqa_dir), str(tiny_model_dir), str(out), "2"], tmp_path)
    first = _ranks(out)
    assert [r["world"] for r in first] == [2, 2] and [r["step"] for r in first] == [2, 2]
    assert first[0]["sha"] == first[1]["sha"], "the two ranks trained apart: not one DDP group"
    assert (out / "checkpoint-2").is_dir() and (out / "model.safetensors").is_file()

    _launch([str(vqa_dir), str(tiny_model_dir), str(out), "3", "latest"], tmp_path)
    resumed = _ranks(out)
    assert [r["step"] for r in resumed] == [3, 3]  # picked up at step 2, one more step
    assert resumed[0]["sha"] == resumed[1]["sha"], "the ranks drifted apart after --resume"
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 3 and 1 in steps  # the resumed run appended to the same log
