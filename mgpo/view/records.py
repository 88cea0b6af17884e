"""What `mgpo show` looks at: trajectory files read into records, filtered, and their original images found.

A record is one trajectory plus the eval row fields around it (task, doc_id, category, prediction, ground truth):
`mgpo infer --save-dir` writes a bare trajectory.json, `mgpo eval` writes trajectories.jsonl rows of the form
``{task, doc_id, category, trajectory: {...}, prediction, ground_truth}``. Nothing here draws anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo.errors import MgpoError
from mgpo.types import Trajectory, numbered_jsonl

# ---------------------------------------------------------------------------------------------------------------
# Records


@dataclass
class Record:
    """One trajectory to show, with the eval row's fields when it came from one."""

    trajectory: Trajectory
    task: str | None = None
    category: str | None = None
    doc_id: str | None = None
    prediction: str | None = None
    row_ground_truth: str | None = None
    source: Path | None = None  # the file it was read from: relative image paths are tried against its folder
    line: int | None = None

    @property
    def ground_truth(self) -> str | None:
        gt = self.trajectory.ground_truth
        return gt if gt is not None else self.row_ground_truth

    @property
    def correct(self) -> bool | None:
        return self.trajectory.correct

    @property
    def label(self) -> str:
        """How the record is named on screen: its doc id, else the trajectory id, else its line."""
        for value in (self.doc_id, self.trajectory.id):
            if value is not None and str(value) != "":
                return str(value)
        return f"#{self.line}" if self.line else "sample"


def record_of(item: Record | Trajectory | Mapping[str, Any], source: Path | None = None, line: int | None = None):
    """A Record from a Record, a Trajectory, a trajectory dict or an eval row (trajectory under "trajectory")."""
    if isinstance(item, Record):
        return item
    if isinstance(item, Trajectory):
        return Record(item, source=source, line=line)
    if not isinstance(item, Mapping):
        raise MgpoError(f"{_where(source, line)}: expected a JSON object (a trajectory or an eval row)")
    data = item.get("trajectory", item)
    if not isinstance(data, Mapping) or "question" not in data:
        raise MgpoError(f"{_where(source, line)}: not a trajectory (no 'question'); give mgpo infer/eval output")
    try:
        traj = Trajectory.from_dict(dict(data))
    except (TypeError, ValueError, AttributeError) as exc:
        raise MgpoError(f"{_where(source, line)}: malformed trajectory ({exc}); give mgpo infer/eval output") from exc
    for n, turn in enumerate(traj.turns, 1):
        if turn.box_original is not None and not _is_box(turn.box_original):
            raise MgpoError(
                f"{_where(source, line)}: turn {n} box_original {turn.box_original!r} is not [x1, y1, x2, y2] "
                "with x1 < x2 and y1 < y2; the file was edited or is not mgpo output"
            )
    if traj.gt_box is not None and not _is_box(traj.gt_box):
        raise MgpoError(f"{_where(source, line)}: gt_box {traj.gt_box!r} is not [x1, y1, x2, y2]; fix or remove it")
    row = item if "trajectory" in item else {}
    return Record(
        traj,
        task=_str(row.get("task")),
        category=_str(row.get("category")),
        doc_id=_str(row.get("doc_id")),
        prediction=_str(row.get("prediction")),
        row_ground_truth=_str(row.get("ground_truth")),
        source=source,
        line=line,
    )


def as_records(items: Iterable[Record | Trajectory | Mapping[str, Any]]) -> list[Record]:
    """Records from any mix of Records, Trajectories, trajectory dicts and eval rows."""
    return [record_of(item, line=i) for i, item in enumerate(items, 1)]


def load_records(path: str | Path) -> list[Record]:
    """Read a trajectory.json (one trajectory or a list) or a trajectories.jsonl (trajectories or eval rows)."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise MgpoError(f"{path}: {what}; give a trajectory.json or trajectories.jsonl written by mgpo infer/eval")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            raise MgpoError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); is it a .jsonl file?") from exc
        items = data if isinstance(data, list) else [data]
        return [record_of(item, path, i) for i, item in enumerate(items, 1)]
    records = [record_of(item, path, n) for n, item in numbered_jsonl(path, "one trajectory")]
    if not records:
        raise MgpoError(f"{path}: no trajectories in the file")
    return records


def _is_box(box: Any) -> bool:
    if not isinstance(box, list | tuple) or len(box) != 4:
        return False
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        return False
    return box[0] < box[2] and box[1] < box[3]


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _where(source: Path | None, line: int | None) -> str:
    if source is None:
        return f"item {line}" if line else "item"
    return f"{source}:{line}" if line else str(source)


# ---------------------------------------------------------------------------------------------------------------
# Selection


@dataclass(frozen=True)
class Selection:
    """Which records to show: filters first, then --index picks one of what is left (negative counts from the end)."""

    index: int | None = None
    id: str | None = None
    failed: bool = False
    correct: bool = False
    task: str | None = None
    category: str | None = None

    def describe(self) -> str:
        parts = [f"--{k} {v}" for k, v in (("id", self.id), ("task", self.task), ("category", self.category)) if v]
        parts += [flag for flag, on in (("--failed", self.failed), ("--correct", self.correct)) if on]
        return " ".join(parts) or "no filter"


def select(records: list[Record], sel: Selection, name: str = "input") -> list[Record]:
    """Apply the filters, then the index; raise a one-line MgpoError when nothing is left."""
    if sel.failed and sel.correct:
        raise MgpoError("--failed and --correct exclude each other; give one of them")
    chosen = records
    if sel.id is not None:
        chosen = [r for r in chosen if sel.id in (r.doc_id, _str(r.trajectory.id))]
    for field, value in (("task", sel.task), ("category", sel.category)):
        if value is not None:
            have = sorted({getattr(r, field) for r in records if getattr(r, field) is not None})
            chosen = [r for r in chosen if getattr(r, field) == value]
            if not chosen:
                known = ", ".join(have) if have else "none (the file has no eval rows)"
                raise MgpoError(f"{name}: no sample with {field} {value!r}; {field}s in the file: {known}")
    if sel.failed:
        chosen = [r for r in chosen if r.correct is False]
    if sel.correct:
        chosen = [r for r in chosen if r.correct is True]
    if not chosen:
        raise MgpoError(f"{name}: no sample matches {sel.describe()} ({len(records)} in the file)")
    if sel.index is not None:
        if not -len(chosen) <= sel.index < len(chosen):
            raise MgpoError(
                f"{name}: --index {sel.index} is out of range; {len(chosen)} sample(s) match "
                f"{sel.describe()} (0..{len(chosen) - 1}, or negative from the end)"
            )
        chosen = [chosen[sel.index]]
    return chosen


def accuracy(records: Iterable[Record]) -> tuple[int, int]:
    """(correct, scored): records without a verdict (no ground truth) are not counted."""
    scored = [r.correct for r in records if r.correct is not None]
    return sum(scored), len(scored)


# ---------------------------------------------------------------------------------------------------------------
# Original images


def image_candidates(record: Record) -> list[Path]:
    """Where the original may be: the recorded path as written, then relative to the trajectory file's folder."""
    raw = record.trajectory.image_path
    if not raw:
        return []
    path = Path(raw).expanduser()
    found = [path]
    if not path.is_absolute() and record.source is not None:
        found.append(record.source.parent / path)
    return found


def find_image(record: Record) -> Path | None:
    """The first candidate path that is a file, else None."""
    return next((p for p in image_candidates(record) if p.is_file()), None)


def missing_note(record: Record) -> str:
    """Why a record's original cannot be found, in one line."""
    if not record.trajectory.image_path:
        return "no image: the trajectory has no image_path"
    return f"image not found: {record.trajectory.image_path}"


def load_original(record: Record, max_pixels: int | None = None) -> tuple[Image.Image | None, str | None]:
    """(image, None), or (None, a one-line reason) when the original cannot be shown."""
    from mgpo import imaging

    path = find_image(record)
    if path is None:
        return None, missing_note(record)
    try:
        # opened as the run opened it, so that the recorded boxes (original pixels) land where the model looked
        mode = (record.trajectory.protocol or {}).get("image_mode")
        mode = mode if mode in imaging.IMAGE_MODES else "upright"  # runs from before the option: always upright
        return imaging.load_image(path, max_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS, mode), None
    except MgpoError as exc:
        return None, f"image not shown: {exc}"


class ImageCache:
    """Originals by path, a few at a time: paging back and forth should not decode the same file again."""

    def __init__(self, size: int = 4, overrides: Mapping[str, Image.Image] | None = None):
        self.size = size
        self.overrides = dict(overrides or {})
        self._items: dict[str, tuple[Image.Image | None, str | None]] = {}

    def get(self, record: Record) -> tuple[Image.Image | None, str | None]:
        for key in (record.doc_id, _str(record.trajectory.id)):
            if key is not None and key in self.overrides:
                return self.overrides[key], None
        key = f"{record.source}|{record.trajectory.image_path}"
        if key not in self._items:
            if len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = load_original(record)
        return self._items[key]
