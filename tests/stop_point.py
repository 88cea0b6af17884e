"""Exact kill points for tests of real processes: the child stops itself (SIGSTOP) right after the N-th call of one
chosen function returns, the test sees it stopped, then SIGKILLs it. What was done before the kill is then exactly
N calls' worth, never a count of finished rows raced from disk.

The stop comes from a ``sitecustomize.py`` that the test puts first on the child's PYTHONPATH (Python imports it at
startup); it wraps the function when its module is first imported. mgpo itself knows nothing of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

HOOK = '''"""Written by tests/stop_point.py: SIGSTOP this process right after call {calls} of {target} returns."""

import functools
import importlib.abc
import importlib.util
import os
import signal
import signal
import sys
import threading

MODULE, QUALNAME, CALLS = {module!r}, {qualname!r}, {calls!r}


def _wrap(module):
    owner = module
    *path, name = QUALNAME.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    lock, count = threading.Lock(), [0]

    @functools.wraps(original)
    def stopping(*args, **kwargs):
        result = original(*args, **kwargs)
        with lock:
            count[0] += 1
            now = count[0] == CALLS
        if now:
            os.kill(os.getpid(), signal.SIGSTOP)  # every thread stops here; the test kills the process
        return result

    setattr(owner, name, stopping)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        sys.meta_path.remove(self)  # find the real spec with the other finders, then patch after it runs
        spec = importlib.util.find_spec(fullname)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _wrap(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())
'''


def stop_env(env: dict[str, str], folder: Path, target: str, calls: int) -> dict[str, str]:
    """``env`` for a child that stops itself after call number ``calls`` of ``target`` ("package.module:Class.meth")
    returns: a sitecustomize.py written to ``folder``, which goes first on PYTHONPATH."""
    module, _, qualname = target.partition(":")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        HOOK.format(target=target, module=module, qualname=qualname, calls=calls), encoding="utf-8"
    )
    rest = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": os.pathsep.join([str(folder), *([rest] if rest else [])])}


def kill_at_stop(args: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float = 600) -> None:
    """Run ``args`` until it stops itself (see stop_env), then SIGKILL it. Fails if it ends first or never stops
    (the deadline only bounds the wait)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG | os.WUNTRACED)
            if pid and os.WIFSTOPPED(status):
                break
            if pid:  # reaped here, so Popen cannot: record how it ended
                proc.returncode = os.waitstatus_to_exitcode(status)
                raise AssertionError(f"ended ({proc.returncode}) before the stop point:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached the stop point in {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.returncode
