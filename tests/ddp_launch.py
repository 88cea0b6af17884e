"""`accelerate launch` of two CPU processes on a free rendezvous port, retried when the port was taken meanwhile.

torchrun's static rendezvous needs a concrete port, and `--main_process_port 0` is no way out: accelerate replaces 0
with a port it picked the same way (bind, read, release; accelerate 1.15). So the port is picked, released, then bound
again by torchrun, and another process can take it in between: that launch fails at once with EADDRINUSE, and it is
retried on a new port (a bounded number of times), never reported as the test's failure.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

LAUNCH_TRIES = 3
PORT_TAKEN = "EADDRINUSE"  # torch's TCPStore, when another process took the port after it was picked


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_prefix(port: int, processes: int = 2) -> list[str]:
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    return [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]  # fmt: skip


def launch(
    run: Callable[[list[str]], subprocess.CompletedProcess], args: list[str], ports: Iterator[int] | None = None
) -> subprocess.CompletedProcess:
    """``run(launch_prefix(port) + args)``, on a new port while the last launch lost its port to another process."""
    ports = ports or iter(free_port, None)
    for _ in range(LAUNCH_TRIES):
        proc = run([*launch_prefix(next(ports)), *args])
        if proc.returncode == 0 or PORT_TAKEN not in proc.stderr:
            break
    return proc
