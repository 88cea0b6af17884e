"""Two processes on CPU: the ranks form one DDP group, so after MGPO
steps their weights are identical (each rank's checksum, taken before the final save), and a
second launch resumes from the checkpoint under two processes and stays in sync.

On a machine without GPUs, `accelerate launch --num_processes 2 --cpu` (and without --cpu) starts ONE process
(accelerate's simple launcher; measured with accelerate 1.15): two CPU processes take `--multi_gpu`, which runs
torchrun and gives a MULTI_CPU (gloo) group. Each rank records its world size, so a one-process run fails here."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ddp_launch import free_port, launch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _launch(args: list[str], tmp_path: Path, ports: Iterator[int] | None = None) -> subprocess.CompletedProcess:
    """Two CPU processes (tests/ddp_launch.py: a launch whose port was taken meanwhile is retried on a new one)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)

    proc = launch(run, args, ports)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _ranks(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_processes_keep_identical_weights_and_resume_in_sync(vqa_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "o"
    _launch([str(WORKER), str(vqa_dir), str(tiny_model_dir), str(out), "2"], tmp_path)
    first = _ranks(out)
    assert [r["world"] for r in first] == [2, 2] and [r["step"] for r in first] == [2, 2]
    assert first[0]["sha"] == first[1]["sha"], "the two ranks trained apart: not one DDP group"
    assert (out / "checkpoint-2").is_dir() and (out / "model.safetensors").is_file()

    _launch([str(WORKER), str(vqa_dir), str(tiny_model_dir), str(out), "3", "latest"], tmp_path)
    resumed = _ranks(out)
    assert [r["step"] for r in resumed] == [3, 3]  # picked up at step 2, one more step
    assert resumed[0]["sha"] == resumed[1]["sha"], "the ranks drifted apart after --resume"
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 3 and 1 in steps  # the resumed run appended to the same log


@pytest.mark.slow
def test_a_port_taken_after_it_was_picked_is_retried_on_a_new_one(tmp_path):
    """The race _launch guards against, made certain: the first port it is given is bound here (not listening, so
    accelerate's own in-use check passes it), torchrun fails on it with EADDRINUSE, and the launch goes on."""
    worker = tmp_path / "hello.py"
    worker.write_text(
        "import torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "print(f'rank {dist.get_rank()} of {dist.get_world_size()}')\n"
    )
    used: list[int] = []

    def ports() -> Iterator[int]:
        used.append(taken)
        yield taken
        while True:
            used.append(free_port())
            yield used[-1]

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        proc = _launch([str(worker)], tmp_path, ports())
    assert len(used) == 2 and used[0] == taken  # the taken port failed the first launch; the second one ran
    ranks = sorted(re.findall(r"rank \d of \d", proc.stdout))  # the two ranks' prints may share a line
    assert ranks == ["rank 0 of 2", "rank 1 of 2"]
