"""`mgpo show` in a real terminal: tmux at 120x40, read back with capture-pane, driven with send-keys.

The captured screen is parsed cell by cell (character, foreground, background), so the test sees what a person
sees: a picture of coloured half-blocks, turn 1's box outline where the trajectory puts it, the crop, the text
panels and the status bar; then n / p / q.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mgpo.artifacts import TURN_COLOURS
from mgpo.synthetic import COLOURS
from mgpo.view.halfblock import UPPER_HALF

TMUX = shutil.which("tmux")
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux not found (apt-get install -y tmux): no terminal to drive")

SGR = re.compile(r"\x1b\[([0-9;]*)m")
Cell = tuple[str, tuple | None, tuple | None]  # character, foreground, background (RGB or a palette index)


def parse_screen(captured: str) -> list[list[Cell]]:
    """capture-pane -p -e output as rows of cells, with the SGR colour state applied."""
    rows = []
    fg = bg = None
    for line in captured.split("\n"):
        row: list[Cell] = []
        pos = 0
        for m in [*SGR.finditer(line), None]:
            end = m.start() if m else len(line)
            row += [(ch, fg, bg) for ch in line[pos:end]]
            if m is None:
                break
            pos = m.end()
            codes = [int(c) if c else 0 for c in m.group(1).split(";")]
            i = 0
            while i < len(codes):
                c = codes[i]
                if c == 0:
                    fg = bg = None
                elif c in (38, 48) and codes[i + 1] == 2:
                    colour = tuple(codes[i + 2 : i + 5])
                    fg, bg = (colour, bg) if c == 38 else (fg, colour)
                    i += 4
                elif c in (38, 48) and codes[i + 1] == 5:
                    fg, bg = ((codes[i + 2],), bg) if c == 38 else (fg, (codes[i + 2],))
                    i += 2
                elif c == 39:
                    fg = None
                elif c == 49:
                    bg = None
                i += 1
        rows.append(row)
    return rows


class Tmux:
    """A private tmux server (its own socket), so nothing touches anyone else's sessions."""

    def __init__(self, name: str):
        self.base = [TMUX, "-L", name, "-f", os.devnull]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=True, timeout=20).stdout

    def capture(self, escapes: bool = False) -> str:
        return self("capture-pane", "-t", "show", "-p", *(["-e"] if escapes else []))

    def wait_for(self, predicate, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; the screen was:\n{screen}")
            time.sleep(0.2)


def status(screen: str) -> str:
    return [line for line in screen.splitlines() if line.strip()][-1]


def test_show_pages_an_eval_run_in_tmux(eval_run):
    tmux = Tmux(f"mgpo-show-test-{os.getpid()}")
    command = (
        f"cd {REPO} && env PYTHONPATH={REPO} COLORTERM=truecolor {sys.executable} -m mgpo.cli show {eval_run.path}; "
        "echo MGPO-EXITED $?; sleep 60"
    )
    try:
        tmux("new-session", "-d", "-s", "show", "-x", "120", "-y", "40", command)
        screen = tmux.wait_for(lambda s: " 1/3 " in s and "answer A" in s)
        assert "running acc 1/1 100.0%" in status(screen) and "n next" in status(screen)
        for text in ("original 1200x900", "turn 1 crop", "turn 1", "turn 2", "box (model)", "box (original)"):
            assert text in screen, text
        box = eval_run.trajectories[0].turns[0].box_original
        assert "[{}, {}, {}, {}]".format(*box) in screen

        cells = parse_screen(tmux.capture(escapes=True))
        blocks = [
            (y, x, fg, bg) for y, row in enumerate(cells) for x, (ch, fg, bg) in enumerate(row) if ch == UPPER_HALF
        ]
        assert len(blocks) > 1000 and all(len(fg) == 3 and len(bg) == 3 for _, _, fg, bg in blocks)  # 24-bit colour

        # the overview: the half-block rows right under the "original" caption, as wide as its first row
        top = next(y for y, row in enumerate(cells) if "original 1200x900" in "".join(c[0] for c in row)) + 1
        width = sum(1 for y, *_ in blocks if y == top)
        rows = next(y for y in range(top, len(cells)) if cells[y][0][0] != UPPER_HALF) - top
        assert width >= 30 and rows >= 10
        red = TURN_COLOURS[0]
        outline = [(y - top, x) for y, x, fg, bg in blocks if top <= y < top + rows and x < width and red in (fg, bg)]
        assert outline, "turn 1's box outline is not on the picture"
        ys, xs = [p[0] for p in outline], [p[1] for p in outline]
        sx, sy = width / 1200, rows / 900  # cells per original pixel
        assert abs(min(xs) - box[0] * sx) <= 1.5 and abs(max(xs) + 1 - box[2] * sx) <= 1.5
        assert abs(min(ys) - box[1] * sy) <= 1.5 and abs(max(ys) + 1 - box[3] * sy) <= 1.5

        # the crop: below its caption, the red cup fills far more cells than in the overview
        crop_top = next(y for y, row in enumerate(cells) if "turn 1 crop" in "".join(c[0] for c in row)) + 1
        cup = COLOURS["red"]

        def near(colour) -> bool:
            return (
                colour is not None
                and len(colour) == 3
                and sum(abs(a - b) for a, b in zip(colour, cup, strict=True)) < 60
            )

        in_crop = sum(1 for y, x, fg, bg in blocks if y >= crop_top and x < width and (near(fg) or near(bg)))
        in_overview = sum(1 for y, x, fg, bg in blocks if top <= y < top + rows and (near(fg) or near(bg)))
        assert in_crop > 10 * max(1, in_overview)

        tmux("send-keys", "-t", "show", "n")
        screen = tmux.wait_for(lambda s: " 2/3 " in status(s))
        assert "s2 · vstar_pos · position" in screen and "running acc 1/2 50.0%" in status(screen)
        assert "✗ wrong" in screen
        tmux("send-keys", "-t", "show", "n")
        tmux.wait_for(lambda s: " 3/3 " in status(s) and "no box found" in s)
        # past the end: stays on the last. Keys are read in order, so the "p" after it lands on 2/3 only if the "n"
        # left the view on 3/3 (a wait for nothing to happen would pass whenever the key was merely slow)
        tmux("send-keys", "-t", "show", "n")
        tmux("send-keys", "-t", "show", "p")
        tmux.wait_for(lambda s: " 2/3 " in status(s))
        tmux("send-keys", "-t", "show", "p")
        tmux.wait_for(lambda s: " 1/3 " in status(s))
        tmux("send-keys", "-t", "show", "q")
        screen = tmux.wait_for(lambda s: "MGPO-EXITED" in s)
        assert "MGPO-EXITED 0" in screen
        assert UPPER_HALF not in screen  # the alternate screen is gone: the shell's screen is back as it was
    finally:
        subprocess.run([*tmux.base, "kill-server"], capture_output=True, timeout=20)
