"""Training data: read V*, MME-RealWorld or generic VQA rows from parquet / JSONL / a folder / a Hub dataset, check
them before any model is loaded, and normalise them to one schema.

Normalised columns: ``id``, ``question`` (without the options), ``choices`` (option texts, no letters), ``answer``
(a letter), ``category``, ``gt_box`` (original pixels or None) and ``image``, which stays as the source gave it (a
decoded PIL image, a path, a base64 string or a {bytes, path} dict) and is opened lazily, at full resolution, by
``open_image`` when a batch is rolled out: the crop is always cut from the original.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo import imaging
from mgpo.answers import LETTERS
from mgpo.errors import MgpoError

SCHEMAS = {
    "vstar": "V* (text, label, image|image_path)",
    "mme-realworld": "MME-RealWorld (question, multi-choice options, answer, bytes|image)",
    "generic": "generic VQA (image|image_path, question, choices, answer)",
}
IMAGE_COLUMNS = ("image", "image_path", "bytes")
_OPTION = re.compile(r"\(([A-Z])\)\s*")
_LLAVA_SUFFIX = re.compile(r"\s*Answer with the option'?s letter from the given choices directly\.?\s*$", re.I)
_LETTERED = re.compile(r"^\s*[\(（]?([A-Z])[\)）.:]\s*")


def load_training_data(spec: str | Path, split: str = "train", limit: int | None = None):
    """Read and normalise a training set; raise MgpoError (one line, naming the problem) on bad input."""
    raw, base_dir, name = _read(str(spec), split)
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    if len(raw) == 0:
        raise MgpoError(f"{name}: the dataset has no rows")
    schema = detect_schema(raw.column_names, name)
    image_col = next(c for c in IMAGE_COLUMNS if c in raw.column_names)
    meta_cols = [c for c in raw.column_names if c not in IMAGE_COLUMNS]
    meta = raw.select_columns(meta_cols)  # no image decoding while checking and normalising the text columns
    rows = [normalise_row(schema, r, i) for i, r in enumerate(meta)]
    bad = [(i, why) for i, (_, why) in enumerate(rows) if why]
    if bad:
        shown = "; ".join(f"row {i}: {why}" for i, why in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise MgpoError(f"{name}: {len(bad)} malformed row(s) for the {SCHEMAS[schema]} schema: {shown}{more}")
    images = raw.select_columns([image_col])
    if image_col != "bytes" and _is_path_column(images, image_col):
        paths = [_resolve_path(p, base_dir) for p in images[image_col]]
        missing = [(i, p) for i, p in enumerate(paths) if not Path(p).is_file()]
        if missing:
            i, p = missing[0]
            raise MgpoError(
                f"{name}: {len(missing)} image file(s) not found, first at row {i}: {p}; "
                "image paths are read relative to the data file"
            )
        image_values: Any = paths
    else:
        image_values = None
    from datasets import Dataset, concatenate_datasets

    table = Dataset.from_list([r for r, _ in rows])
    if image_values is not None:
        table = table.add_column("image", image_values)
    else:
        if image_col != "image":
            images = images.rename_column(image_col, "image")
        table = concatenate_datasets([table, images], axis=1)
    return table


def detect_schema(columns: list[str], name: str = "data") -> str:
    """Which of the accepted schemas the columns follow; MgpoError naming what is missing otherwise."""
    cols = set(columns)
    has_image = any(c in cols for c in IMAGE_COLUMNS)
    if {"text", "label"} <= cols and has_image:
        return "vstar"
    if {"question", "multi-choice options", "answer"} <= cols and has_image:
        return "mme-realworld"
    if {"question", "choices", "answer"} <= cols and has_image:
        return "generic"
    wanted = {  # ties go to the first: the generic schema is the one to suggest
        "generic": ["image|image_path", "question", "choices", "answer"],
        "vstar": ["text", "label", "image|image_path"],
        "mme-realworld": ["question", "multi-choice options", "answer", "bytes|image"],
    }

    def missing(need: list[str]) -> list[str]:
        return [n for n in need if not any(part in cols for part in n.split("|"))]

    closest = min(wanted, key=lambda k: len(missing(wanted[k])))
    raise MgpoError(
        f"{name}: missing column(s) {', '.join(missing(wanted[closest]))} for the {SCHEMAS[closest]} schema "
        f"(found: {', '.join(sorted(cols)) or 'none'}); accepted schemas: {'; '.join(SCHEMAS.values())}"
    )


def normalise_row(schema: str, row: dict[str, Any], index: int) -> tuple[dict[str, Any], str | None]:
    """One row in the normalised schema, and why it is malformed (None when it is fine)."""
    if schema == "vstar":
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            return {}, "'text' is empty or not a string"
        question, choices = split_inline_options(text)
        answer = row.get("label")
        rid = row.get("question_id", index)
    elif schema == "mme-realworld":
        question = row.get("question")
        choices = _option_list(row.get("multi-choice options"))
        answer = row.get("answer")
        rid = row.get("index", row.get("question_id", index))
    else:
        question = row.get("question")
        choices = _option_list(row.get("choices"))
        answer = row.get("answer")
        rid = row.get("id", row.get("question_id", index))
    if not isinstance(question, str) or not question.strip():
        return {}, "the question is empty or not a string"
    if choices is None or len(choices) < 2:
        return {}, "needs at least two answer options"
    letter = _answer_letter(answer, choices)
    if letter is None:
        valid = LETTERS[: len(choices)]
        return {}, f"answer {answer!r} is not one of the option letters {', '.join(valid)} or an option's text"
    gt_box = _gt_box(row.get("gt_box"))  # [x1, y1, x2, y2], original pixels
    if gt_box is None and schema == "vstar" and (xywh := _gt_box(row.get("bbox"))) is not None:
        gt_box = [xywh[0], xywh[1], xywh[0] + xywh[2], xywh[1] + xywh[3]]  # V* annotates [x, y, w, h]
    category = row.get("category")
    return {
        "id": str(rid),
        "question": question.strip(),
        "choices": choices,
        "answer": letter,
        "category": str(category) if category is not None else "",
        "gt_box": gt_box,
    }, None


def split_inline_options(text: str) -> tuple[str, list[str]]:
    """V*'s 'question (A) x (B) y' -> ('question', ['x', 'y']); the trailing LLaVA instruction is dropped."""
    text = _LLAVA_SUFFIX.sub("", text.strip())
    marks = list(_OPTION.finditer(text))
    # options are the run of (A), (B), ... in order; an earlier stray '(X)' in the question is not one
    start = next((i for i, m in enumerate(marks) if m.group(1) == "A"), None)
    if start is None:
        return text, []
    run = [marks[start]]
    for m in marks[start + 1 :]:
        if m.group(1) == LETTERS[len(run)]:
            run.append(m)
    question = text[: run[0].start()].strip()
    choices = []
    for k, m in enumerate(run):
        end = run[k + 1].start() if k + 1 < len(run) else len(text)
        choices.append(text[m.end() : end].strip())
    return question, choices


def _option_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return None
    return [_LETTERED.sub("", v, count=1).strip() for v in value]


def _answer_letter(answer: Any, choices: list[str]) -> str | None:
    if not isinstance(answer, str) or not answer.strip():
        return None
    a = answer.strip().strip("()（）").strip()
    if len(a) == 1 and a.upper() in LETTERS[: len(choices)]:
        return a.upper()
    for i, c in enumerate(choices):
        if a.lower() == c.strip().lower():
            return LETTERS[i]
    return None


def _gt_box(value: Any) -> list[float] | None:
    if isinstance(value, list | tuple) and len(value) == 4 and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return None


# ---------------------------------------------------------------------------------------------------------------
# Reading


def _read(spec: str, split: str):
    import datasets

    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            files = _data_files(path)
            return _load_files(files), path, spec
        if path.is_file():
            return _load_files([path]), path.parent, spec
        if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
            raise MgpoError(f"{spec}: no such file or folder; give a parquet/JSONL file, a folder, or a Hub dataset id")
        return datasets.load_dataset(spec, split=split), None, spec
    except MgpoError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise MgpoError(f"{spec}: cannot read the dataset ({detail})") from exc


def _data_files(folder: Path) -> list[Path]:
    for pattern in ("*.parquet", "*.jsonl", "*.json"):
        files = sorted(p for p in folder.rglob(pattern) if p.is_file())
        if files:
            return files
    raise MgpoError(f"{folder}: no .parquet, .jsonl or .json files in this folder")


def _load_files(files: list[Path]):
    import datasets

    suffix = files[0].suffix.lower()
    if suffix not in (".parquet", ".jsonl", ".json"):
        raise MgpoError(f"{files[0]}: unsupported data file; give .parquet, .jsonl or .json")
    builder = "parquet" if suffix == ".parquet" else "json"
    return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")


def _is_path_column(ds, col: str) -> bool:
    first = ds[0][col] if len(ds) else None
    return isinstance(first, str) and not _looks_base64(first)


def _resolve_path(value: Any, base_dir: Path | None) -> str:
    p = Path(str(value)).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _looks_base64(value: str) -> bool:
    return len(value) > 1024  # no real path is this long; MME-RealWorld ships images as base64 strings


def open_image(value: Any, max_pixels: int = imaging.DEFAULT_MAX_IMAGE_PIXELS, mode: str = "reference") -> Image.Image:
    """The original, full-resolution image from whatever the ``image`` column holds."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, str) and _looks_base64(value):
        try:
            value = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise MgpoError("image column: a value is neither a file path nor valid base64") from exc
    if value is None:
        raise MgpoError("image column: a row has no image")
    return imaging.load_image(value, max_pixels, mode)
