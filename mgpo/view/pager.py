"""Interactive paging through many trajectories: one full-screen view at a time and a one-line status bar.

Keys: n / → / space next, p / ← previous, j / k / ↓ / ↑ scroll a line, PgDn / PgUp scroll a page, q / Esc quit.
Single keys are read with termios in cbreak mode (no Enter needed) and the terminal is always restored. The key
handling and the status line are pure functions, so they are tested without a terminal; the screen loop is tested
under tmux.
"""

from __future__ import annotations

import io
import os
import select
import sys
import termios
import tty
from dataclasses import dataclass, replace
from typing import TextIO

from rich.console import Console
from rich.text import Text

from mgpo.view.panels import clean
from mgpo.view.records import ImageCache, Record, accuracy
from mgpo.view.terminal import build_view, draws_pictures

KEYS = {
    b"n": "next", b" ": "next", b"\x1b[C": "next", b"l": "next",
    b"p": "prev", b"\x1b[D": "prev", b"h": "prev",
    b"j": "down", b"\x1b[B": "down", b"k": "up", b"\x1b[A": "up",
    b"\x1b[6~": "page_down", b"\x1b[5~": "page_up", b"g": "top",
    b"q": "quit", b"Q": "quit", b"\x1b": "quit", b"\x03": "quit",
}  # fmt: skip
HELP = "n next · p prev · j/k scroll · q quit"


@dataclass(frozen=True)
class PagerState:
    """Which record is on screen and how far its view is scrolled."""

    pos: int = 0
    scroll: int = 0


def handle_key(state: PagerState, action: str, count: int, view_lines: int, page: int) -> PagerState | None:
    """The state after one action, or None to quit. count: records; view_lines: lines of the current view."""
    if action == "quit":
        return None
    if action == "next":
        return PagerState(min(count - 1, state.pos + 1), 0) if state.pos + 1 < count else state
    if action == "prev":
        return PagerState(max(0, state.pos - 1), 0)
    last = max(0, view_lines - page)
    step = {"down": 1, "up": -1, "page_down": page, "page_up": -page, "top": -view_lines}.get(action, 0)
    return replace(state, scroll=min(last, max(0, state.scroll + step)))


def status_line(records: list[Record], pos: int, scroll_note: str = "", width: int | None = None) -> Text:
    """Position, the record's name and verdict, running accuracy (records 1..pos+1) and overall accuracy.

    When width is given, the least useful parts are left out until the line fits.
    """
    record = records[pos]
    verdict = {True: ("  ✓", "bold green"), False: ("  ✗", "bold red"), None: ("", "")}[record.correct]
    right, scored = accuracy(records[: pos + 1])
    total_right, total = accuracy(records)
    parts = [  # (drop order: higher goes first, 0 never), text, style
        (0, f" {pos + 1}/{len(records)} ", "bold reverse"),
        (4, f" {clean(record.label)}", ""),
        (6, clean("".join(f" · {t}" for t in (record.task, record.category) if t)), "dim"),
        (0, *verdict),
        (0, f"  running acc {right}/{scored} {100 * right / scored:.1f}%" if scored else "", ""),
        (7, f"  (all {total_right}/{total} {100 * total_right / total:.1f}%)" if total else "", "dim"),
        (5, f"  {scroll_note}" if scroll_note else "", "dim"),
        (3, f"  {HELP}", "dim"),
    ]
    while width is not None and sum(len(t) for _, t, _ in parts) > width:
        worst = max(range(len(parts)), key=lambda i: parts[i][0])
        if parts[worst][0] == 0:
            break
        del parts[worst]
    text = Text()
    for _, part, style in parts:
        text.append(part, style=style)
    return text


def read_key(fd: int, timeout: float) -> bytes | None:
    """One key press (escape sequences whole), or None when none came within timeout seconds."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return None
    data = os.read(fd, 1)
    if data == b"\x1b":  # an arrow or PgUp/PgDn sends more bytes right behind the escape
        while select.select([fd], [], [], 0.03)[0]:
            data += os.read(fd, 1)
            if data[-1:].isalpha() or data[-1:] == b"~":
                break
    return data


class Pager:
    """Full-screen pager over records on a terminal; state lives here, drawing goes through rich."""

    def __init__(
        self,
        records: list[Record],
        console: Console,
        images: ImageCache | None = None,
        prompts: bool = False,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ):
        self.records = records
        self.console = console
        self.images = images or ImageCache()
        self.prompts = prompts
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self._cache: dict[tuple[int, int, int], list[str]] = {}

    def view_lines(self, pos: int, cols: int, rows: int) -> list[str]:
        """The record's view rendered to escape-coded lines for a cols x rows screen (cached)."""
        key = (pos, cols, rows)
        if key not in self._cache:
            record = self.records[pos]
            image, note = self.images.get(record)
            view = build_view(record, image, cols, rows - 1, draws_pictures(self.console), self.prompts, note)
            self._cache = {k: v for k, v in self._cache.items() if k[1:] == (cols, rows)}
            self._cache[key] = self._render(view, cols, rows)
        return self._cache[key]

    def _render(self, renderable, cols: int, rows: int) -> list[str]:
        buffer = Console(
            file=io.StringIO(), width=cols, height=rows, force_terminal=True, color_system=self.console.color_system,
            no_color=self.console.no_color, highlight=False, emoji=False, legacy_windows=False,
        )  # fmt: skip
        buffer.print(renderable, end="", crop=True)
        return buffer.file.getvalue().split("\n")  # type: ignore[attr-defined]

    def screen(self, state: PagerState, cols: int, rows: int) -> str:
        """Everything written for one frame: view lines from the scroll position, then the status bar."""
        lines = self.view_lines(state.pos, cols, rows)
        page = rows - 1
        scroll = min(state.scroll, max(0, len(lines) - page))  # the terminal may have grown since the last key
        shown = lines[scroll : scroll + page]
        note = f"lines {scroll + 1}-{scroll + len(shown)} of {len(lines)}" if len(lines) > page else ""
        status = self._render(status_line(self.records, state.pos, note, cols), cols, 1)[0]
        out = ["\x1b[H"]
        out += [f"{line}\x1b[0m\x1b[K\r\n" for line in shown]
        out.append("\x1b[J")
        out.append(f"\x1b[{rows};1H{status}\x1b[0m")
        return "".join(out)

    def run(self) -> None:
        """Page until the user quits; the terminal is restored however the loop ends."""
        fd = self.stdin.fileno()
        saved = termios.tcgetattr(fd)
        write = self.stdout.write
        state: PagerState | None = PagerState()
        size = None
        try:
            tty.setcbreak(fd)
            write("\x1b[?1049h\x1b[?25l")
            while state is not None:
                size = os.get_terminal_size(self.stdout.fileno())
                cols, rows = size.columns, max(3, size.lines)
                write(self.screen(state, cols, rows))
                self.stdout.flush()
                key = None
                while key is None:
                    key = read_key(fd, 0.25)
                    if key is None and os.get_terminal_size(self.stdout.fileno()) != size:
                        break  # resized: redraw at the new size
                if key is None:
                    continue
                action = KEYS.get(key)
                if action:
                    total = len(self.view_lines(state.pos, cols, rows))
                    state = replace(state, scroll=min(state.scroll, max(0, total - rows + 1)))
                    state = handle_key(state, action, len(self.records), total, rows - 1)
        finally:
            write("\x1b[?25h\x1b[?1049l")
            self.stdout.flush()
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
