"""trajectories.jsonl: one row per finished sample, appended and flushed as it finishes, read back on --resume.

A row is keyed by (mode, task, doc_id, repeat). A kill can tear at most the last line; reading skips it, and a
key seen twice keeps its first row, so a resumed run neither loses nor double-counts a sample. The exception is a
sample whose generation failed (``error_kind == "backend"``): --resume runs it again and the new row replaces it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mgpo.errors import MgpoError
from mgpo.types import iter_jsonl

Key = tuple[str, str, int, int]


def row_key(row: dict[str, Any]) -> Key:
    return (row.get("mode", "grounded"), row["task"], int(row["doc_id"]), int(row.get("repeat", 0)))


def retryable(row: dict[str, Any]) -> bool:
    """A sample whose generation failed (server down, OOM): --resume runs it again."""
    return row.get("trajectory", {}).get("error_kind") == "backend"


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a trajectories.jsonl: per key the first row, unless a later retry replaced a failed generation."""
    path = Path(path)
    if not path.is_file():
        return []
    seen: dict[Key, dict[str, Any]] = {}
    for row in iter_jsonl(path):
        key = row_key(row)
        if key not in seen or retryable(seen[key]):
            seen[key] = row
    return list(seen.values())


class RunLog:
    """Appends rows to a JSONL file (flush per row) and remembers which samples are finished."""

    def __init__(
        self, path: str | Path, images_dir: str | Path | None = None, resume: bool = False, others: tuple = ()
    ):
        """``others``: more files whose finished rows count as done on --resume, read only (under several
        processes each rank appends to its own part file; the merged file and the other parts are read)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.images_dir = Path(images_dir) if images_dir else self.path.parent / "images"
        self.done: dict[Key, dict[str, Any]] = {}
        if resume:
            for source in (*others, self.path):
                self.done.update({row_key(r): r for r in read_rows(source) if not retryable(r)})
            self._drop_torn_tail()
        elif self.path.exists() and self.path.stat().st_size:
            # never delete finished work: a rerun of the same command must say so, not start over
            raise MgpoError(
                f"{self.path}: holds a previous run; resume it (--resume, or resume=True in --model_args) or write "
                "to a new output directory"
            )
        self.on_row: Callable[[dict[str, Any]], None] | None = None
        self.on_total: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def _drop_torn_tail(self) -> None:
        """A kill mid-write leaves a partial last line; cut it so the next append starts on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            # truncate in place rather than rewrite: a kill at this moment then cannot lose the finished rows
            os.truncate(self.path, data.rfind(b"\n") + 1)

    def write(self, row: dict[str, Any]) -> None:
        with self._lock:
            key = row_key(row)
            if key in self.done:
                return
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
            self.done[key] = row
        if self.on_row:
            self.on_row(row)


def process_index() -> tuple[int, int]:
    """(rank, world size) of this process, from the launcher's environment; (0, 1) when run alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def part_path(path: str | Path, rank: int | str) -> Path:
    """The part file that process ``rank`` appends to under a multi-process launch: t.jsonl -> t.rank1.jsonl."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def process_log(
    path: str | Path, images_dir: str | Path | None, resume: bool, rank: int, world: int
) -> tuple[RunLog, list[Path]]:
    """The RunLog of this process and every rank's part file ([] when run alone): one process appends to ``path``;
    several each append to their own part (merged by rank 0 at the end), and on --resume every rank counts the merged
    file and any part a killed run left as done."""
    path = Path(path)
    if world <= 1:
        return RunLog(path, images_dir, resume=resume), []
    parts = [part_path(path, r) for r in range(world)]
    others = (path, *sorted(path.parent.glob(part_path(path, "*").name)))
    return RunLog(parts[rank], images_dir or path.parent / "images", resume=resume, others=others), parts


def merge_parts(path: str | Path, parts: list[Path]) -> int:
    """Append to ``path`` every row of the part files whose key it lacks (or holds only as a failed generation),
    then delete the parts; return how many rows were added. Run by one process, after the others finished."""
    path = Path(path)
    have = {row_key(r): r for r in read_rows(path)}
    added = 0
    with open(path, "a", encoding="utf-8") as fh:
        for part in parts:
            for row in read_rows(part):
                key = row_key(row)
                if key in have and not (retryable(have[key]) and not retryable(row)):
                    continue
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                have[key] = row
                added += 1
        fh.flush()
        os.fsync(fh.fileno())  # the rows are safe in the merged file before the parts go
    for part in parts:
        part.unlink(missing_ok=True)
    return added
