"""Training curves from a run's train_log.jsonl, drawn to a PNG with Pillow (`mgpo plot RUN_DIR`): one panel per
figure (reward, valid-box ratio, KL, entropy, ... per step), each with its first and last value written out."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mgpo.errors import MgpoError

CURVES = (  # (log key, panel title): the ones a run has are drawn, in this order
    ("reward", "reward"),
    ("mgpo/valid_box_ratio", "valid-box ratio"),
    ("kl", "KL"),
    ("entropy", "entropy"),
    ("loss", "loss"),
    ("mgpo/turn1_length", "turn-1 tokens"),
)
PANEL = (420, 220)
MARGIN = 44


def read_curves(log_file: Path) -> dict[str, list[tuple[int, float]]]:
    """Per key, the (step, value) points of a train_log.jsonl (rows without the key are skipped)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for line_no, line in enumerate(log_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MgpoError(f"{log_file}: line {line_no} is not JSON ({exc.msg})") from exc
        for key, _ in CURVES:
            value = row.get(key)
            if isinstance(value, int | float) and "step" in row:
                curves.setdefault(key, []).append((int(row["step"]), float(value)))
    return curves


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the curves of the run in ``run_dir`` (its train_log.jsonl) to ``out`` (default RUN_DIR/curves.png)."""
    from mgpo.train.run import LOG_FILE

    run = Path(run_dir)
    log_file = run / LOG_FILE if run.is_dir() else run
    if not log_file.is_file():
        raise MgpoError(f"{run}: no {LOG_FILE} here; give the --output-dir of an `mgpo train` run")
    curves = read_curves(log_file)
    panels = [(key, title) for key, title in CURVES if curves.get(key)]
    if not panels:
        raise MgpoError(f"{log_file}: no training steps logged yet")
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    img = Image.new("RGB", (PANEL[0] * cols, PANEL[1] * rows + 30), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((8, 8), f"{run.name}: {log_file.name}", fill="black", font=font)
    for i, (key, title) in enumerate(panels):
        ox, oy = (i % cols) * PANEL[0], 30 + (i // cols) * PANEL[1]
        _panel(draw, font, (ox, oy), title, curves[key])
    target = Path(out) if out else (run if run.is_dir() else run.parent) / "curves.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    img.save(target)
    return target


def _panel(draw: ImageDraw.ImageDraw, font, origin: tuple[int, int], title: str, points) -> None:
    ox, oy = origin
    left, top = ox + MARGIN, oy + 22
    right, bottom = ox + PANEL[0] - 12, oy + PANEL[1] - 26
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:  # a flat curve sits in the middle of its panel
        lo, hi = lo - 0.5, hi + 0.5
    s0, s1 = min(steps), max(steps)
    span = max(s1 - s0, 1)

    def xy(step: int, value: float) -> tuple[float, float]:
        return left + (right - left) * (step - s0) / span, bottom - (bottom - top) * (value - lo) / (hi - lo)

    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    first, last = values[0], values[-1]
    draw.text((left, oy + 6), f"{title}  (step {s0}: {first:.3g} -> step {s1}: {last:.3g})", fill="black", font=font)
    draw.text((ox + 4, top), f"{hi:.3g}", fill=(90, 90, 90), font=font)
    draw.text((ox + 4, bottom - 10), f"{lo:.3g}", fill=(90, 90, 90), font=font)
    draw.text((left, bottom + 6), f"{s0}", fill=(90, 90, 90), font=font)
    draw.text((right - 30, bottom + 6), f"{s1} (step)", fill=(90, 90, 90), font=font)
    line = [xy(s, v) for s, v in points]
    if len(line) > 1:
        draw.line(line, fill=(30, 90, 200), width=2)
    for x, y in line:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(30, 90, 200))
