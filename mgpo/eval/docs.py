"""Benchmark rows as lmms-eval docs, from the hub datasets or from local files (parquet / JSONL / folder).

Rows are read by mgpo.benchmarks (the one reader eval and train share); this module only turns a Record into the
doc shape lmms-eval carries: ``question_id``, ``question`` (no options), ``options`` (option texts), ``answer``
(letter), ``category``, ``gt_boxes`` (original-pixel [x1, y1, x2, y2] boxes, maybe empty), ``option_order`` (for
each shown option, its index in the source), ``image_path`` (a file, or '' when the image is embedded),
``image_bytes`` (an embedded image as its file's bytes, undecoded, or None) and ``image`` (an in-memory PIL image, or
None). Both the lmms-eval tasks and the mgpo model read this shape; nothing here runs a model.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo import benchmarks
from mgpo.benchmarks import Record
from mgpo.errors import MgpoError
from mgpo.types import iter_jsonl


def decode_image(value: Any, base_dir: Path | None = None) -> Image.Image | bytes | str | None:
    """An image cell as a PIL image, the embedded image's encoded bytes, or a file path: PIL, HF {'bytes','path'}
    dicts, raw bytes, paths, or base64 strings. Embedded bytes stay encoded, unread: mgpo's loader decodes them
    when the sample runs (strict about truncation, bomb-guarded, EXIF kept), so a bad one fails only its sample."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        value = value.get("path")
        if not value:
            return None
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = str(value)
    if len(text) > 1024 and not Path(text[:255]).suffix:  # base64 (MME-RealWorld, HR-Bench)
        return base64.b64decode(text)
    path = Path(text)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path)


def shuffle_options(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    """Permute a doc's options reproducibly (per seed and question id) and remap its answer letter."""
    record = Record(doc["question_id"], doc.get("question", ""), list(doc["options"]),
                    doc["answer"], option_order=list(doc["option_order"]))  # fmt: skip
    out = benchmarks.shuffle_options(record, seed)
    return {**doc, "options": out.choices, "answer": out.answer, "option_order": out.option_order}


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

    file = find_data_file(path)
    if file.suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(file)
        except Exception as exc:
            raise MgpoError(f"{file}: cannot read parquet ({str(exc).splitlines()[0][:120]})") from exc
        rows = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    elif file.suffix == ".json":
        rows = _json_rows(file)
    else:
        rows = list(iter_jsonl(file, "one row object", torn_tail=False))
    if not rows:
        raise MgpoError(f"{file}: no rows")
    return rows, file.parent


def _json_rows(file: Path) -> list[dict[str, Any]]:
    """A .json data file: one array of row objects (a JSONL file holds one object per line instead)."""
    import json

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MgpoError(
            f"{file}: not valid JSON ({getattr(exc, 'msg', exc)}); give an array of rows, or JSONL"
        ) from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise MgpoError(
            f"{file}: a .json data file must hold an array of row objects; or give one row per line as .jsonl"
        )
    return data


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def _plain(value: Any) -> Any:
    """numpy arrays from parquet (lists, nested lists) into plain Python lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_doc(record: Record, base_dir: Path | None = None) -> dict[str, Any]:
    """A Record as a doc; its image becomes ``image_path`` (a file), ``image_bytes`` (embedded) or ``image`` (PIL)."""
    doc: dict[str, Any] = {
        "question_id": record.id,
        "question": record.question,
        "options": list(record.choices),
        "answer": record.answer,
        "category": record.category,
        "gt_boxes": [list(b) for b in record.gt_boxes],
        "option_order": list(record.option_order),
        "image_error": "",  # in every doc: a datasets table takes its columns from the rows
    }
    try:
        image = decode_image(record.image, base_dir)
    except (ValueError, binascii.Error) as exc:
        # base64 that does not decode fails its own sample (recorded as an input error), not the whole task
        image = None
        doc["image_error"] = f"sample {record.id}: cannot decode its embedded image ({_short(exc)})"
    doc["image_path"] = image if isinstance(image, str) else ""
    # every key in every doc: Dataset.from_list takes its columns from the first row
    doc["image_bytes"] = image if isinstance(image, bytes) else None
    doc["image"] = image if isinstance(image, Image.Image) else None
    return doc


def read_local_records(path: str | Path) -> tuple[list[Record], Path]:
    """The Records of a local data file (schema detected from its columns) and its folder; MgpoError if unreadable."""
    rows, base = read_local_rows(path)
    name = str(find_data_file(path))
    columns = sorted({k for r in rows for k in r})
    return benchmarks.read_rows(benchmarks.detect_schema(columns, name), rows, name), base
