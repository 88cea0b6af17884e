"""What `mgpo show` and `mgpo eval --show-failures` call: pick records, then print, page or export."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from mgpo.types import Trajectory
from mgpo.view.records import (
    ImageCache,
    Record,
    Selection,
    accuracy,
    as_records,
    find_image,
    load_records,
    missing_note,
    select,
)
from mgpo.view.terminal import draws_pictures, print_record


def show_file(
    path: str | Path,
    selection: Selection | None = None,
    console: Console | None = None,
    png: str | Path | None = None,
    html: str | Path | None = None,
    page: bool | None = None,
    prompts: bool = False,
) -> list[Path]:
    """Show the selected trajectories of a file: export them (png/html) or print them, paging on a terminal.

    page=None pages when stdin and stdout are both terminals and more than one record is selected. Returns the
    files written by the exports.
    """
    console = console or Console()
    records = select(load_records(path), selection or Selection(), name=str(path))
    written: list[Path] = []
    if png is not None:
        from mgpo.view.export_png import export_png

        written += export_png(records, png)
    if html is not None:
        from mgpo.view.export_html import export_html

        written.append(export_html(records, html, title=Path(path).name))
    if written:
        return written
    if page is None:
        page = len(records) > 1 and sys.stdin.isatty() and sys.stdout.isatty() and console.is_terminal
    if page:
        from mgpo.view.pager import Pager

        Pager(records, console, prompts=prompts).run()
    else:
        print_records(records, console, prompts=prompts)
    return written


def print_records(
    records: list[Record],
    console: Console,
    images: ImageCache | None = None,
    prompts: bool = False,
    summary: bool = True,
) -> None:
    """Print records one after another, separated by a rule naming each, with the accuracy at the end."""
    images = images or ImageCache()
    for i, record in enumerate(records):
        if len(records) > 1:
            console.print(Rule(Text(f"{i + 1}/{len(records)} {record.label}"), align="left"))
        if draws_pictures(console):
            image, note = images.get(record)
        else:  # plain text draws no pictures: say where the image is without decoding it
            image, note = None, None if find_image(record) else missing_note(record)
        print_record(record, console, image, note, prompts)
    right, scored = accuracy(records)
    if summary and len(records) > 1 and scored:
        console.print(f"accuracy {right}/{scored} = {100 * right / scored:.1f}% over the {len(records)} shown")


def show_failures(
    items: Iterable[Record | Trajectory | Mapping[str, Any]],
    n: int,
    console: Console | None = None,
    images: Mapping[str, Image.Image] | None = None,
) -> int:
    """Print the first n wrong answers (eval rows, trajectory dicts or Trajectories); return how many were shown.

    images, when given, maps a doc_id or trajectory id to its original image (for eval data whose images live in a
    dataset rather than on disk); otherwise each trajectory's image_path is loaded.
    """
    console = console or Console()
    failed = [r for r in as_records(items) if r.correct is False][: max(0, n)]
    if not failed:
        console.print("no failures to show")
        return 0
    console.print(Rule(f"first {len(failed)} failure(s)", align="left"))
    print_records(failed, console, ImageCache(overrides=images), summary=False)
    return len(failed)
