"""The text half of a trajectory view: the question, one panel per turn, and the verdict.

Each turn's panel is framed in that turn's box colour (the colours of mgpo.artifacts, so terminal, PNG and HTML
agree). The model's JSON block is highlighted. Rich drops every style when the output is not a terminal, so the same
renderables are the plain-text view.
"""

from __future__ import annotations

import re

from rich.color import Color
from rich.console import Group, RenderableType
from rich.highlighter import JSONHighlighter
from rich.panel import Panel
from rich.style import Style
from rich.table import Table
from rich.text import Text

from mgpo.artifacts import GT_COLOUR, TURN_COLOURS
from mgpo.types import Trajectory, Turn
from mgpo.view.records import Record

JSON_BLOCK = re.compile(r"```json\s*\n?(.*?)```", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: object) -> str:
    """Text safe to print: control characters (a model may emit ESC) shown in caret form, never executed, and the
    replacement character U+FFFD (bytes the tokenizer could not decode) written as the escape ``\\ufffd``, so it
    reads as undecodable output rather than as a glyph the terminal may draw as anything or nothing."""
    text = _CONTROL.sub(lambda m: "^" + chr((ord(m.group()) + 64) % 128) if ord(m.group()) < 128 else "^?", str(value))
    return text.replace("\ufffd", "\\ufffd")


def turn_colour(i: int) -> tuple[int, int, int]:
    """The colour of turn i (0-based): its box, crop frame and panel border."""
    return TURN_COLOURS[i % len(TURN_COLOURS)]


def turn_style(i: int) -> Style:
    return Style(color=Color.from_rgb(*turn_colour(i)))


GT_STYLE = Style(color=Color.from_rgb(*GT_COLOUR))


def header(record: Record) -> Text:
    """Sample name, task/category, question and choices."""
    traj = record.trajectory
    text = Text()
    named = record.doc_id or traj.id or record.line
    tags = ([record.label] if named else []) + [v for v in (record.task, record.category) if v]
    if tags:  # a lone `mgpo infer` sample has no name worth a line
        text.append(clean(" · ".join(tags)) + "\n", style="dim")
    text.append(clean(traj.question), style="bold")
    for i, choice in enumerate(traj.choices):
        text.append(f"\n  ({chr(65 + i)}) {clean(choice)}")
    return text


SHOWN_CHARS = 8_000  # of one turn's output in the terminal view: the first four fifths and the last fifth


def model_text(output: str) -> Text:
    """The model's output with its ```json block highlighted (keys, numbers, strings) and set off in bold."""
    if not output:
        return Text("(empty output)", style="dim italic")
    if len(output) > SHOWN_CHARS:  # a runaway output of megabytes would take minutes to lay out, and no one reads it
        head, tail = output[: SHOWN_CHARS * 4 // 5], output[-SHOWN_CHARS // 5 :]
        hidden = len(output) - len(head) - len(tail)
        text = model_text(head)
        text.append(f"\n… {hidden:,} characters not shown (the record keeps them all) …\n", style="dim italic")
        text.append_text(model_text(tail))
        return text
    output = clean(output)
    text = Text()
    pos = 0
    highlight = JSONHighlighter()
    for m in JSON_BLOCK.finditer(output):
        text.append(output[pos : m.start()])
        text.append(output[m.start() : m.start(1)], style="dim")
        block = Text(m.group(1), style="bold")
        highlight.highlight(block)
        text.append_text(block)
        text.append(output[m.end(1) : m.end()], style="dim")
        pos = m.end()
    text.append(output[pos:])
    return text


def turn_facts(turn: Turn) -> Table:
    """Box in model and original pixels, the region shown, fallback, lenient-parse note, tokens and seconds."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    shown = turn.shown_box
    if shown and turn.image_size and shown != [0, 0, *turn.image_size]:
        facts.add_row("image", f"crop {fmt_box(shown)} resized to {_wh(turn.frame_size)}")
    else:
        facts.add_row("image", f"full {_wh(turn.image_size)}, resized to {_wh(turn.frame_size)}")
    if turn.box_model is not None:
        facts.add_row("box (model)", f"{fmt_box(turn.box_model)} on {_wh(turn.frame_size)}")
    if turn.box_original is not None:
        x1, y1, x2, y2 = turn.box_original
        facts.add_row("box (original)", f"{fmt_box(turn.box_original)}  {x2 - x1}x{y2 - y1} px")
    if turn.fallback:
        facts.add_row("fallback", Text(clean(turn.fallback), style="yellow"))
    if turn.parse_note:
        facts.add_row("lenient", Text(clean(turn.parse_note)))
    facts.add_row("cost", f"{turn.visual_tokens} visual + {turn.output_tokens} output tokens, {turn.seconds:.2f}s")
    return facts


def turn_panel(i: int, turn: Turn, prompts: bool = False) -> Panel:
    body: list[RenderableType] = []
    if prompts:
        body.append(Text(clean(turn.prompt), style="dim"))
    body += [model_text(turn.output), turn_facts(turn)]
    return Panel(Group(*body), title=f"turn {i + 1}", title_align="left", border_style=turn_style(i))


def verdict(record: Record) -> Text:
    """The answer against the ground truth, the error if any, and the totals."""
    traj = record.trajectory
    text = Text()
    if traj.error:
        text.append("error: ", style="bold red")
        text.append(f"{clean(traj.error)}\n")
    text.append("answer ", style="bold")
    text.append(clean(traj.answer or "none"))
    if traj.answer_source and traj.answer_source not in ("boxed", "none"):
        text.append(f" (via {traj.answer_source})", style="dim")
    if record.prediction is not None and record.prediction != (traj.answer or ""):
        text.append(f"  prediction {clean(record.prediction)}")
    if record.ground_truth is not None:
        text.append("   ground truth ", style="bold")
        text.append(clean(record.ground_truth))
    if record.correct is not None:
        text.append(
            "   ✓ correct" if record.correct else "   ✗ wrong", style="bold green" if record.correct else "bold red"
        )
    visual = sum(t.visual_tokens for t in traj.turns)
    output = sum(t.output_tokens for t in traj.turns)
    seconds = sum(t.seconds for t in traj.turns)
    text.append(f"\n{len(traj.turns)} turn(s), {visual} visual + {output} output tokens, {seconds:.2f}s", style="dim")
    if traj.gt_box:
        text.append("   truth box ", style="dim")
        text.append(fmt_box(traj.gt_box), style=GT_STYLE)
    return text


def text_parts(record: Record, prompts: bool = False) -> list[RenderableType]:
    """Header, a panel per turn, verdict."""
    traj: Trajectory = record.trajectory
    return [header(record), *(turn_panel(i, t, prompts) for i, t in enumerate(traj.turns)), verdict(record)]


def fmt_box(box: list[float] | list[int]) -> str:
    return "[" + ", ".join(_number(v) for v in box) + "]"


def _number(value: float | int) -> str:
    """A coordinate as written, shortened when a model wrote hundreds of digits (too big for a float, too long to
    show)."""
    try:
        return f"{value:g}"
    except (OverflowError, TypeError, ValueError):
        text = str(value)
        return text if len(text) <= 24 else f"{text[:12]}…({len(text)} digits)"


def _wh(size: list[int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "?"
