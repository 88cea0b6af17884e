"""Readable terminal rendering of a trajectory with rich: one panel per turn, then the verdict."""

from __future__ import annotations

import re

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from mgpo.types import Trajectory

TURN_STYLES = ["red", "green", "blue", "dark_orange", "magenta", "cyan"]
_JSON_BLOCK = re.compile(r"```json.*?```", re.DOTALL)


def render_trajectory(traj: Trajectory) -> Group:
    """A rich renderable: header, a panel per turn, and the answer against the ground truth."""
    parts: list = [_header(traj)]
    for i, turn in enumerate(traj.turns):
        style = TURN_STYLES[i % len(TURN_STYLES)]
        body: list = [Text(turn.prompt, style="dim")]
        body.append(Text("model:", style="bold"))
        body.extend(_output(turn.output))
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        facts.add_row("image", f"{_wh(turn.image_size)} original, shown as {_wh(turn.frame_size)} frame")
        if turn.shown_box and turn.image_size and turn.shown_box != [0, 0, *turn.image_size]:
            facts.add_row("shown region", str(turn.shown_box))
        if turn.box_model is not None:
            facts.add_row("box (model)", _fmt_box(turn.box_model))
        if turn.box_original is not None:
            facts.add_row("box (original)", str(turn.box_original))
        if turn.fallback:
            facts.add_row("fallback", Text(turn.fallback, style="yellow"))
        if turn.parse_note:
            facts.add_row("lenient", turn.parse_note)
        facts.add_row("cost", f"{turn.visual_tokens} visual + {turn.output_tokens} output tokens, {turn.seconds:.2f}s")
        body.append(facts)
        parts.append(Panel(Group(*body), title=f"turn {i + 1}", border_style=style, title_align="left"))
    parts.append(_verdict(traj))
    return Group(*parts)


def _header(traj: Trajectory) -> Text:
    text = Text()
    if traj.id:
        text.append(f"[{traj.id}] ", style="dim")
    text.append(traj.question, style="bold")
    for i, choice in enumerate(traj.choices):
        text.append(f"\n  ({chr(65 + i)}) {choice}")
    return text


def _output(output: str) -> list:
    if not output:
        return [Text("(empty)", style="dim italic")]
    pieces: list = []
    pos = 0
    for m in _JSON_BLOCK.finditer(output):
        if m.start() > pos:
            pieces.append(Text(output[pos : m.start()]))
        pieces.append(Syntax(m.group(0), "markdown", theme="ansi_dark", word_wrap=True))
        pos = m.end()
    if pos < len(output):
        pieces.append(Text(output[pos:]))
    return pieces


def _verdict(traj: Trajectory) -> Text:
    text = Text()
    if traj.error:
        text.append(f"error: {traj.error}\n", style="bold red")
    text.append("answer: ", style="bold")
    text.append(traj.answer or "none")
    if traj.answer_source and traj.answer_source not in ("boxed", "none"):
        text.append(f" (via {traj.answer_source})", style="dim")
    if traj.ground_truth is not None:
        text.append("   ground truth: ", style="bold")
        text.append(str(traj.ground_truth))
        if traj.correct is not None:
            text.append(
                "   correct" if traj.correct else "   wrong", style="bold green" if traj.correct else "bold red"
            )
    return text


def _wh(size: list[int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "?"


def _fmt_box(box: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def print_trajectory(traj: Trajectory, console: Console | None = None) -> None:
    (console or Console()).print(render_trajectory(traj))
