"""Plain data shared by infer, eval and train: boxes (and their IoU), samples, turns and trajectories.

The trajectory JSON schema is public (see README, "Trajectory schema"); field names here are that schema.
Nothing in this module touches images or models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from PIL import Image

SCHEMA_VERSION = 2  # 2: Trajectory.response stored (version-1 rows derive it from the final turn)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box [x1, y1, x2, y2]; coordinates are whatever frame the caller says."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    def as_ints(self) -> list[int]:
        return [int(v) for v in self.as_list()]

    @classmethod
    def of(cls, values: Iterable[float]) -> Box:
        x1, y1, x2, y2 = values
        return cls(x1, y1, x2, y2)


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Sample:
    """One question about one image: the engine's input."""

    image: Image.Image | str | Path | bytes  # bytes: an embedded image file, decoded by the engine
    question: str
    choices: list[str] = field(default_factory=list)
    ground_truth: str | None = None
    id: str | None = None
    gt_box: list[float] | None = None  # original pixels, where the data has it
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Turn:
    """One assistant turn: what was shown, what the model wrote, and what the system did with it."""

    prompt: str
    output: str = ""
    box_model: list[float] | None = None
    box_original: list[int] | None = None
    fallback: str | None = None
    parse_note: str | None = None  # set when lenient parsing accepted something strict parsing would not
    image_size: list[int] | None = None  # original image (w, h)
    frame_size: list[int] | None = None  # model frame (w, h) of the image shown in this turn
    shown_box: list[int] | None = None  # original-pixel region of the image shown in this turn
    visual_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


@dataclass
class Trajectory:
    """A whole multi-turn episode for one sample."""

    question: str
    choices: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    response: str = ""  # the scored text: the final kept assistant turn (what the answer is read from)
    answer: str | None = None
    answer_source: str | None = None  # 'boxed', a named strict fallback, or 'none' (see mgpo.answers)
    ground_truth: str | None = None
    correct: bool | None = None
    error: str | None = None
    error_kind: str | None = None  # 'input' (bad image/doc), 'backend' (--resume retries it), 'internal'
    id: str | None = None
    image_path: str | None = None
    gt_box: list[float] | None = None
    system_prompt: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    model_family: str | None = None  # mgpo.families name: the frame and coordinate convention the turns used

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        known = {f.name for f in fields(cls)}
        turn_fields = {f.name for f in fields(Turn)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["turns"] = [Turn(**{k: v for k, v in t.items() if k in turn_fields}) for t in data.get("turns", [])]
        if not isinstance(data.get("response"), str):  # version 1 stored none: its final turn is what was scored
            kwargs["response"] = kwargs["turns"][-1].output if kwargs["turns"] else ""
        return cls(**kwargs)

    @property
    def final_output(self) -> str:
        return self.turns[-1].output if self.turns else ""


# ---------------------------------------------------------------------------------------------------------------
# JSON Lines I/O


def write_jsonl(trajectories: Iterable[Trajectory], path: str | Path, append: bool = False) -> None:
    """Write trajectories one per line, flushing after each so a crash loses nothing already written."""
    with open(path, "a" if append else "w", encoding="utf-8") as fh:
        for traj in trajectories:
            fh.write(traj.to_json() + "\n")
            fh.flush()


def numbered_jsonl(
    path: str | Path, each_line: str = "one JSON object", torn_tail: bool = True
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, value) for every non-blank line of a JSON Lines file: mgpo's one JSONL reader.

    ``torn_tail``: a last line that does not parse is a write cut short by a kill (everything before it is intact)
    and is skipped; files mgpo appends to are read this way. Any other bad line is one MgpoError naming the file and
    the line, and saying what ``each_line`` should be.
    """
    from mgpo.errors import MgpoError  # here: mgpo.errors is tiny, but types stays importable on its own

    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            if torn_tail and n == len(lines):
                return
            msg = getattr(exc, "msg", "nested too deeply")
            raise MgpoError(f"{path}:{n}: not valid JSON ({msg}); each line must be {each_line}") from exc


def iter_jsonl(path: str | Path, each_line: str = "one JSON object", torn_tail: bool = True) -> Iterator[Any]:
    """The values of a JSON Lines file (see ``numbered_jsonl``)."""
    for _, value in numbered_jsonl(path, each_line, torn_tail):
        yield value


def read_trajectories(path: str | Path) -> list[Trajectory]:
    """Read trajectories from a .jsonl file, or a .json file holding one trajectory or a list of them."""
    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data if isinstance(data, list) else [data]
    else:
        items = list(iter_jsonl(path))
    # eval rows wrap the trajectory under "trajectory"
    return [Trajectory.from_dict(item.get("trajectory", item)) for item in items]
