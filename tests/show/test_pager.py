"""The pager's parts that need no terminal: key handling, the status line, key reading, one screen."""

from __future__ import annotations

import io
import os
import re

from rich.console import Console

from mgpo.view.pager import KEYS, Pager, PagerState, handle_key, read_key, status_line
from mgpo.view.records import load_records

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_next_prev_quit_and_scroll():
    s = PagerState()
    assert handle_key(s, "next", 3, 50, 39) == PagerState(1, 0)
    assert handle_key(PagerState(2, 0), "next", 3, 50, 39) == PagerState(2, 0)  # stays on the last
    assert handle_key(PagerState(1, 5), "prev", 3, 50, 39) == PagerState(0, 0)  # a new record starts at its top
    assert handle_key(PagerState(0, 0), "prev", 3, 50, 39) == PagerState(0, 0)
    assert handle_key(s, "quit", 3, 50, 39) is None
    assert handle_key(s, "down", 3, 50, 39) == PagerState(0, 1)
    assert handle_key(PagerState(0, 10), "down", 3, 50, 39) == PagerState(0, 11)
    assert handle_key(PagerState(0, 11), "down", 3, 50, 39) == PagerState(0, 11)  # 50 lines, 39 on screen
    assert handle_key(s, "up", 3, 50, 39) == s
    assert handle_key(s, "down", 3, 20, 39) == s  # fits on screen: nothing to scroll
    assert handle_key(PagerState(0, 3), "top", 3, 50, 39) == PagerState(0, 0)
    assert KEYS[b"n"] == "next" and KEYS[b"p"] == "prev" and KEYS[b"q"] == "quit" and KEYS[b"\x1b[C"] == "next"


def test_status_line_has_position_and_running_accuracy(eval_run):
    records = load_records(eval_run.path)  # correct, wrong, wrong
    assert status_line(records, 0).plain.startswith(" 1/3  s1 · vstar_attr · color  ✓  running acc 1/1 100.0%")
    line = status_line(records, 1).plain
    assert " 2/3 " in line and "✗" in line and "running acc 1/2 50.0%" in line and "all 1/3 33.3%" in line
    assert "running acc 1/3 33.3%" in status_line(records, 2).plain


def test_read_key_keeps_escape_sequences_whole():
    r, w = os.pipe()
    try:
        os.write(w, b"\x1b[Cn\x1b[6~")
        assert read_key(r, 0.1) == b"\x1b[C"
        assert read_key(r, 0.1) == b"n"
        assert read_key(r, 0.1) == b"\x1b[6~"
        assert read_key(r, 0.01) is None
        os.write(w, b"\x1b")  # Esc alone quits
        assert KEYS[read_key(r, 0.1)] == "quit"
    finally:
        os.close(r)
        os.close(w)


def test_one_screen_is_the_view_then_the_status_bar(eval_run):
    records = load_records(eval_run.path)
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor")
    pager = Pager(records, console)
    screen = pager.screen(PagerState(1, 0), 120, 40)
    assert screen.startswith("\x1b[H") and "\x1b[40;1H" in screen  # the status bar goes on the last row
    body, status = screen.split("\x1b[40;1H")
    assert body.count("\r\n") <= 39
    assert "2/3" in ANSI.sub("", status) and "▀" in body and "turn 1 crop" in ANSI.sub("", body)
    assert pager.view_lines(1, 120, 40) is pager.view_lines(1, 120, 40)  # rendered once, then cached


def test_status_line_fits_narrow_terminals(eval_run):
    records = load_records(eval_run.path)
    full = status_line(records, 1, "lines 1-23 of 40").plain
    assert "n next" in full and "all 1/3" in full and "vstar_pos" in full
    narrow = status_line(records, 1, "lines 1-23 of 40", width=80).plain
    assert len(narrow) <= 80 and " 2/3 " in narrow and "running acc 1/2 50.0%" in narrow and "q quit" in narrow
    tiny = status_line(records, 1, "lines 1-23 of 40", width=30).plain
    assert tiny.startswith(" 2/3 ") and "running acc 1/2" in tiny


def test_scroll_is_clamped_when_the_screen_grows(eval_run):
    records = load_records(eval_run.path)
    pager = Pager(records, Console(file=io.StringIO(), force_terminal=True, color_system="truecolor"))
    screen = pager.screen(PagerState(0, 30), 140, 60)  # scrolled on a small screen, then the window grew
    assert "lines" not in ANSI.sub("", screen.split("\x1b[60;1H")[1])  # everything fits: no scroll note
    assert "original 1200x900" in ANSI.sub("", screen)  # and the view starts at its top
