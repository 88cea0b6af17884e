"""Training data: read V*, MME-RealWorld, HR-Bench or generic VQA rows from parquet / JSONL / a folder / a Hub
dataset, check them before any model is loaded, and normalise them with mgpo.benchmarks (the reader eval uses too).

Normalised columns: ``id``, ``question`` (without the options), ``choices`` (option texts, no letters), ``answer``
(a letter), ``category``, ``gt_box`` (the targets' union, [x1, y1, x2, y2] in original pixels, or None) and
``image``, which stays as the source gave it (a decoded PIL image, a path, a base64 string or a {bytes, path} dict) and
is opened lazily, at full resolution, by ``open_image`` when a batch is rolled out: the crop is always cut from
the original.
"""

from __future__ import annotations

import base64
import binascii
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo import benchmarks, imaging
from mgpo.benchmarks import IMAGE_COLUMNS, detect_schema
from mgpo.errors import MgpoError


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
    records = benchmarks.read_rows(schema, list(meta), name)  # the one reader eval uses too
    rows = [{"id": r.id, "question": r.question, "choices": r.choices, "answer": r.answer, "category": r.category,
             "gt_box": r.gt_box} for r in records]  # fmt: skip
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

    table = Dataset.from_list(rows)
    if image_values is not None:
        table = table.add_column("image", image_values)
    else:
        if image_col != "image":
            images = images.rename_column(image_col, "image")
        table = concatenate_datasets([table, images], axis=1)
    return table


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


def open_image(
    value: Any,
    max_pixels: int = imaging.DEFAULT_MAX_IMAGE_PIXELS,
    mode: str = "reference",
    view_pixels: tuple[int, int] | None = None,
) -> Image.Image:
    """The original, full-resolution image from whatever the ``image`` column holds (``view_pixels``: see
    imaging.load_image)."""
    if isinstance(value, dict):
        value = value["bytes"] if value.get("bytes") is not None else value.get("path")  # b"": an empty image
    if isinstance(value, str) and _looks_base64(value):
        try:
            value = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise MgpoError("image column: a value is neither a file path nor valid base64") from exc
    if value is None:
        raise MgpoError("image column: a row has no image")
    return imaging.load_image(value, max_pixels, mode, view_pixels)


# ---------------------------------------------------------------------------------------------------------------
# Checking every image before training


def check_images(
    table: Any, name: str, max_pixels: int, mode: str, view_pixels: tuple[int, int], workers: int | None = None
) -> int:
    """Decode every image of ``table`` (load_training_data's) once, exactly as the trainer will, and raise one
    MgpoError naming the first bad row, its file and the reason; return the number of images checked.

    A full decode, not Pillow's ``verify()``: verify reads a JPEG's header only (a JPEG cut in half passes) and
    skips the shape rules. Decoding runs on a few threads (Pillow releases the GIL while it decodes); a 2246x1582
    JPEG took 43 ms on one core here, so 10,000 such images take about 7 minutes on one core, less with more."""
    from datasets import Image as ImageFeature

    images = table.select_columns(["id", "image"])
    if isinstance(images.features["image"], ImageFeature):
        images = images.cast_column("image", ImageFeature(decode=False))  # the bytes, so open_image decodes them

    def problem(value: Any) -> str | None:
        try:
            open_image(value, max_pixels, mode, view_pixels)
        except MgpoError as exc:
            return str(exc)
        return None

    bad: list[tuple[int, Any, str]] = []
    start = 0
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for batch in images.iter(batch_size=64):
            for i, (row_id, reason) in enumerate(zip(batch["id"], pool.map(problem, batch["image"]), strict=True)):
                if reason is not None:
                    bad.append((start + i, row_id, reason))
            start += len(batch["id"])
    if bad:
        index, row_id, reason = bad[0]
        more = ""
        if len(bad) > 1:
            rows = ", ".join(str(b[0]) for b in bad[1:6]) + (", ..." if len(bad) > 6 else "")
            more = f" ({len(bad) - 1} more bad row(s): {rows})"
        raise MgpoError(
            f"{name}: row {index} (id {row_id}) has an image training cannot use: {reason}; fix the file or remove "
            f"the row{more}"
        )
    return start
