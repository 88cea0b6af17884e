"""What a run directory holds: the fingerprint of the run that wrote it (model, backend, protocol, sampling, tasks,
data source), kept in ``run.json``, so that ``--resume`` continues only the same run.

A resumed run appends to trajectories.jsonl and its results mix both runs' rows; with another model, protocol, task
or data set that mix is silently wrong, so ``--resume`` of a directory whose fingerprint differs is refused with one
line naming what differs. Settings that only change how much of the same run is done (``--limit``, ``--repeats``,
``--batch-size``, ``--ablate``) are not part of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mgpo.errors import MgpoError

RUN_FILE = "run.json"
VERSION = 1


def file_identity(path: str | Path) -> dict[str, Any]:
    """A local file or folder as the run saw it: its resolved path, size and modification time (a folder: those of
    its data files), cheap to compute for any size and changed by any rewrite."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = sorted(f for pattern in ("*.parquet", "*.jsonl", "*.json") for f in p.glob(pattern) if f.is_file())
        return {"path": str(p), "files": {f.name: _stat(f) for f in files}}
    return {"path": str(p), **(_stat(p) if p.exists() else {"missing": True})}


def _stat(p: Path) -> dict[str, int]:
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def model_identity(model: str) -> str:
    """A local model directory by its resolved path (the same model however it is spelled), a Hub id as given."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.is_dir() else model


def fingerprint(opts: Any) -> dict[str, Any]:
    """The fingerprint of an EvalOptions: everything that changes what a sample's row says."""
    data: dict[str, Any] = file_identity(opts.data) if opts.data else {"hub": True}
    if not opts.data and os.environ.get("MGPO_DATA"):
        data = file_identity(os.environ["MGPO_DATA"])
    out: dict[str, Any] = {
        "version": VERSION,
        "model": model_identity(opts.model),
        "backend": opts.backend,
        "protocol": opts.protocol.to_dict(),
        "sampling": opts.sampling.to_dict(),
        "tasks": sorted(opts.tasks),
        "data": data,
        "shuffle_options": opts.shuffle_options,
    }
    if opts.responses:
        out["responses"] = file_identity(opts.responses)
    return out


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings that differ, each as ``name: was X, now Y`` (nested settings by dotted name)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(differences(a, b, name + "."))
        elif a != b:
            out.append(f"{name}: was {_short(a)}, now {_short(b)}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def check_or_record(output_dir: Path, current: dict[str, Any], resume: bool, record: bool = True) -> None:
    """On --resume, refuse a run directory recorded by a different run (one line); then record this run's
    fingerprint (``record``: one process of several records it). A directory from before fingerprints (no
    run.json) is resumed and gets one."""
    path = output_dir / RUN_FILE
    if resume and path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if not isinstance(recorded, dict):
            raise MgpoError(f"{path}: unreadable run record; drop --resume and pick a new --output-dir")
        diff = differences(recorded, current)
        if diff:
            shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise MgpoError(
                f"{output_dir}: --resume of a different run ({shown}); rerun with the original settings, or drop "
                "--resume and pick a new --output-dir"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    if not record:
        return
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps({"fingerprint": current}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a kill never leaves a torn record that would block the next --resume
