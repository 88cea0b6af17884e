"""Benchmark rows in one normalised shape, from the hub datasets or from local files (parquet / JSONL / folder).

A normalised doc has: ``question_id``, ``question`` (no options), ``options`` (option texts), ``answer`` (letter),
``category``, ``gt_boxes`` (original-pixel [x1, y1, x2, y2] boxes, maybe empty), ``option_order`` (for each shown
option, its index in the source), ``image_path`` (a file, or '' when the image is in memory) and, for hub data, an
``image`` column. Both the lmms-eval tasks and the mgpo model read this shape; nothing here runs a model.
"""

from __future__ import annotations

import base64
import io
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo.answers import LETTERS
from mgpo.errors import MgpoError

VSTAR_OPTION = re.compile(r"\(([A-E])\)\s*([^()]+?)(?=\s*\([A-E]\)|$)", re.DOTALL)
VSTAR_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def _boxes(value: Any) -> list[list[float]]:
    """Ground-truth boxes as a list of [x1, y1, x2, y2]; accepts one box or a list of them."""
    if value is None:
        return []
    items = list(value)
    if not items:
        return []
    if all(isinstance(v, int | float) for v in items):
        items = [items]
    out = []
    for box in items:
        box = [float(v) for v in box]
        if len(box) == 4:
            out.append(box)
    return out


def _letter(value: Any) -> str:
    return str(value).strip().strip("()").upper()


def split_vstar_text(text: str) -> tuple[str, list[str]]:
    """V*'s 'question (A) x (B) y' text into the question and the option texts."""
    text = text.replace(VSTAR_INSTRUCTION, "").strip()
    first = re.search(r"\([A-E]\)", text)
    if not first:
        return text, []
    question = text[: first.start()].strip()
    return question, [m.group(2).strip() for m in VSTAR_OPTION.finditer(text[first.start() :])]


def vstar_row(row: dict[str, Any]) -> dict[str, Any]:
    """A V* Bench row (hub, upstream JSONL, or mgpo's synthetic data) in the normalised shape."""
    if row.get("options") is not None and row.get("question"):
        question, options = str(row["question"]), [str(o) for o in row["options"]]
    else:
        question, options = split_vstar_text(str(row.get("text", "")))
    return {
        "question_id": str(row.get("question_id", row.get("id", ""))),
        "question": question,
        "options": options,
        "answer": _letter(row.get("label", row.get("answer", ""))),
        "category": str(row.get("category", "")),
        "gt_boxes": _boxes(row.get("bbox", row.get("gt_boxes"))),
    }


def mmerw_row(row: dict[str, Any]) -> dict[str, Any]:
    """An MME-RealWorld row: options '(A) text', category 'Perception/<Subtask>' kept as the sub-category key."""
    options = [re.sub(r"^\s*[（(]\s*[A-E]\s*[)）]\s*", "", str(o)).strip() for o in row.get("multi-choice options", [])]
    category = str(row.get("category", ""))
    task = "Perception" if "perception" in category.lower() else "Reasoning"
    return {
        "question_id": str(row.get("index", row.get("question_id", ""))),
        "question": str(row.get("question", "")).strip(),
        "options": options,
        "answer": _letter(row.get("answer", "")),
        "category": f"{task}/{category.split('/')[-1]}",
        "gt_boxes": _boxes(row.get("gt_boxes")),
    }


def hrbench_row(row: dict[str, Any]) -> dict[str, Any]:
    """An HR-Bench row: options in columns A-D, category single | cross."""
    options = [str(row[k]) for k in "ABCD" if row.get(k) is not None and str(row[k]) != "nan"]
    return {
        "question_id": str(row.get("index", row.get("question_id", ""))),
        "question": str(row.get("question", "")).strip(),
        "options": options,
        "answer": _letter(row.get("answer", "")),
        "category": str(row.get("category", "")),
        "gt_boxes": _boxes(row.get("gt_boxes")),
    }


NORMALISERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "vstar": vstar_row,
    "mmerw": mmerw_row,
    "hrbench": hrbench_row,
}


def decode_image(value: Any, base_dir: Path | None = None) -> Image.Image | str | None:
    """An image cell as a PIL image or a file path: PIL, HF {'bytes','path'} dicts, paths, or base64 strings."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"]))
        value = value.get("path")
        if not value:
            return None
    if isinstance(value, bytes):
        return Image.open(io.BytesIO(value))
    text = str(value)
    if len(text) > 1024 and not Path(text[:255]).suffix:  # base64 (MME-RealWorld, HR-Bench)
        return Image.open(io.BytesIO(base64.b64decode(text)))
    path = Path(text)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path)


def shuffle_options(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    """Permute a doc's options reproducibly (per seed and question id) and remap its answer letter."""
    n = len(doc["options"])
    if n < 2:
        return doc
    order = list(range(n))
    random.Random(f"{seed}:{doc['question_id']}").shuffle(order)
    old = LETTERS.index(doc["answer"]) if doc["answer"] in LETTERS[:n] else None
    return {
        **doc,
        "options": [doc["options"][i] for i in order],
        "answer": LETTERS[order.index(old)] if old is not None else doc["answer"],
        "option_order": [doc["option_order"][i] for i in order],
    }


# ---------------------------------------------------------------------------------------------------------------
# Local data


def find_data_file(path: str | Path) -> Path:
    """The data file for --data: the file itself, or in a folder test.parquet, then *.parquet, then *.jsonl."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix not in (".parquet", ".jsonl", ".json"):
            raise MgpoError(f"{p}: unsupported data file; give a .parquet or .jsonl file, or a folder holding one")
        return p
    if p.is_dir():
        for pattern in ("test.parquet", "*.parquet", "test.jsonl", "*.jsonl"):
            found = sorted(p.glob(pattern))
            if found:
                return found[0]
        raise MgpoError(f"{p}: no .parquet or .jsonl file in this folder; write one with `mgpo data synth --out {p}`")
    raise MgpoError(f"{p}: data path not found; give a parquet/JSONL file or a folder (see `mgpo data synth`)")


def read_local_rows(path: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """Rows of a local data file (parquet or JSONL) and the directory relative image paths resolve against."""
    import json

    file = find_data_file(path)
    if file.suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(file)
        except Exception as exc:
            raise MgpoError(f"{file}: cannot read parquet ({str(exc).splitlines()[0][:120]})") from exc
        rows = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    else:
        rows = []
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise MgpoError(f"{file}:{n}: not valid JSON ({exc.msg})") from exc
    if not rows:
        raise MgpoError(f"{file}: no rows")
    return rows, file.parent


def _plain(value: Any) -> Any:
    """numpy arrays from parquet (lists, nested lists) into plain Python lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def normalise(row: dict[str, Any], benchmark: str, base_dir: Path | None = None) -> dict[str, Any]:
    """One row in the normalised shape; the image becomes ``image_path`` (a file) or stays in ``image``."""
    doc = NORMALISERS[benchmark](row)
    doc["option_order"] = list(range(len(doc["options"])))
    raw = row.get("image", row.get("bytes", row.get("image_path")))
    image = decode_image(raw, base_dir)
    doc["image_path"] = image if isinstance(image, str) else ""
    if isinstance(image, Image.Image):
        doc["image"] = image
    return doc
