"""`mgpo show --html`: one self-contained page of many trajectories, filterable by task, category and correctness.

Images are inlined as base64 JPEG (the original with boxes, via mgpo.artifacts.overlay, and each crop), the style
and the filter script are inline: the page opens offline, from a mail attachment, anywhere. Nothing is fetched.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image

from mgpo.artifacts import crops, overlay
from mgpo.view.panels import JSON_BLOCK, fmt_box, turn_colour
from mgpo.view.records import Record, accuracy, load_original

OVERVIEW_SIDE = 720
CROP_SIDE = 360

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #222; }
header { position: sticky; top: 0; background: #222; color: #eee; padding: 8px 16px; z-index: 1; }
header label { margin-right: 14px; } header select { margin-left: 4px; }
main { padding: 12px 16px; }
.card { background: #fff; border-radius: 6px; padding: 12px 16px; margin-bottom: 14px; box-shadow: 0 1px 3px #0002; }
.card.correct { border-left: 6px solid #2a8; } .card.wrong { border-left: 6px solid #c33; }
.card.unscored { border-left: 6px solid #999; }
.meta { color: #777; font-size: 12px; } .question { font-weight: 600; margin: 4px 0; }
.pictures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; margin: 8px 0; }
.pictures figure { margin: 0; } figcaption { font-size: 12px; color: #555; }
.turn { border-left: 4px solid; padding: 2px 10px; margin: 8px 0; }
pre { white-space: pre-wrap; margin: 4px 0; font-size: 13px; }
pre .json { background: #fff4c0; font-weight: 600; }
.facts td:first-child { font-weight: 600; padding-right: 12px; vertical-align: top; }
.fallback { color: #b60; } .verdict { font-weight: 600; } .ok { color: #2a8; } .bad { color: #c33; }
.missing { color: #b60; }
"""

SCRIPT = """
function applyFilters() {
  const want = {};
  for (const sel of document.querySelectorAll('header select')) want[sel.dataset.key] = sel.value;
  let shown = 0, right = 0, scored = 0;
  for (const card of document.querySelectorAll('.card')) {
    const ok = Object.keys(want).every(k => want[k] === '' || card.dataset[k] === want[k]);
    card.style.display = ok ? '' : 'none';
    if (!ok) continue;
    shown += 1;
    if (card.dataset.verdict !== 'unscored') { scored += 1; if (card.dataset.verdict === 'correct') right += 1; }
  }
  const acc = scored ? ` · accuracy ${right}/${scored} = ${(100 * right / scored).toFixed(1)}%` : '';
  document.getElementById('count').textContent = `${shown} shown${acc}`;
}
document.addEventListener('DOMContentLoaded', () => {
  for (const sel of document.querySelectorAll('header select')) sel.addEventListener('change', applyFilters);
  applyFilters();
});
"""


def export_html(records: list[Record], out: str | Path, title: str = "mgpo trajectories") -> Path:
    """Write the page for the records to OUT (parents created) and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(records, title), encoding="utf-8")
    return out


def page(records: list[Record], title: str) -> str:
    """The whole HTML document."""
    right, scored = accuracy(records)
    summary = f"{len(records)} samples" + (f", accuracy {right}/{scored}" if scored else "")
    filters = [
        _select("task", "task", sorted({r.task for r in records if r.task})),
        _select("category", "category", sorted({r.category for r in records if r.category})),
        _select("verdict", "answer", ["correct", "wrong", "unscored"]),
    ]
    cards = "\n".join(card(r) for r in records)
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head>\n<body>\n"
        f"<header><strong>{_e(title)}</strong> · {_e(summary)} &nbsp; {''.join(filters)}"
        f"<span id='count'></span></header>\n<main>\n{cards}\n</main>\n</body></html>\n"
    )


def _select(key: str, label: str, values: list[str]) -> str:
    options = "<option value=''>all</option>" + "".join(f"<option>{_e(v)}</option>" for v in values)
    return f"<label>{label}<select data-key='{key}'>{options}</select></label>"


def verdict_of(record: Record) -> str:
    return "unscored" if record.correct is None else ("correct" if record.correct else "wrong")


def card(record: Record) -> str:
    """One sample: pictures, then a block per turn, then the verdict."""
    traj = record.trajectory
    verdict = verdict_of(record)
    data = f"data-task='{_e(record.task or '')}' data-category='{_e(record.category or '')}' data-verdict='{verdict}'"
    meta = " · ".join(_e(v) for v in (record.label, record.task, record.category) if v)
    choices = "".join(f"<div>({chr(65 + i)}) {_e(c)}</div>" for i, c in enumerate(traj.choices))
    turns = "".join(_turn(i, t) for i, t in enumerate(traj.turns))
    answer = f"answer {_e(traj.answer or 'none')}"
    if record.ground_truth is not None:
        answer += f" · ground truth {_e(record.ground_truth)}"
    if record.correct is not None:
        answer += " · <span class='ok'>correct</span>" if record.correct else " · <span class='bad'>wrong</span>"
    error = f"<div class='bad'>error: {_e(traj.error)}</div>" if traj.error else ""
    return (
        f"<section class='card {verdict}' {data}><div class='meta'>{meta}</div>"
        f"<div class='question'>{_e(traj.question)}</div>{choices}{_pictures(record)}{turns}"
        f"{error}<div class='verdict'>{answer}</div></section>"
    )


def _pictures(record: Record) -> str:
    image, note = load_original(record)
    if image is None:
        return f"<p class='missing'>{_e(note or 'no image')}; showing the text only</p>"
    traj = record.trajectory
    figures = [_figure(overlay(traj, image, OVERVIEW_SIDE), f"original {image.width}x{image.height} with boxes")]
    for number, piece in crops(traj, image):
        scale = CROP_SIDE / max(piece.size)
        size = (max(1, round(piece.width * scale)), max(1, round(piece.height * scale)))
        # small crops are blown up pixel for pixel (what the model got, only bigger); big ones are shrunk smoothly
        piece = piece.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
        box = traj.turns[number - 1].box_original or []
        figures.append(_figure(piece, f"turn {number} crop {fmt_box(box)}", turn_colour(number - 1)))
    return f"<div class='pictures'>{''.join(figures)}</div>"


def _figure(image: Image.Image, caption: str, colour: tuple[int, int, int] | None = None) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    border = f" style='border:3px solid rgb{colour}'" if colour else ""
    return (
        f"<figure><img{border} alt='{_e(caption)}' src='data:image/jpeg;base64,{data}'>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _turn(i: int, turn) -> str:
    rows = []
    if turn.box_model is not None:
        rows.append(("box (model)", f"{fmt_box(turn.box_model)} in the {_wh(turn.frame_size)} frame"))
    if turn.box_original is not None:
        rows.append(("box (original)", fmt_box(turn.box_original)))
    if turn.fallback:
        rows.append(("fallback", f"<span class='fallback'>{_e(turn.fallback)}</span>"))
    if turn.parse_note:
        rows.append(("lenient", _e(turn.parse_note)))
    rows.append(("cost", f"{turn.visual_tokens} visual + {turn.output_tokens} output tokens, {turn.seconds:.2f}s"))
    table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    colour = turn_colour(i)
    return (
        f"<div class='turn' style='border-color: rgb{colour}'><b>turn {i + 1}</b>"
        f"<pre>{_output(turn.output)}</pre><table class='facts'>{table}</table></div>"
    )


def _output(text: str) -> str:
    """Escaped model text with the JSON block marked."""
    if not text:
        return "<i>(empty output)</i>"
    parts, pos = [], 0
    for m in JSON_BLOCK.finditer(text):
        parts.append(_e(text[pos : m.start(1)]))
        parts.append(f"<span class='json'>{_e(m.group(1))}</span>")
        pos = m.end(1)
    parts.append(_e(text[pos:]))
    return "".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _wh(size: list[int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "?"
