"""`mgpo demo`: the README's first command, offline on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from mgpo.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_runs_offline_and_shows_a_crop(tmp_path: Path) -> None:
    console = Console(record=True, width=120, force_terminal=False)
    paths = run_demo(tmp_path / "demo", console)
    text = console.export_text()
    assert "turn 1" in text and "turn 2" in text and "box (original)" in text
    tiny = json.loads((paths["tiny"] / "trajectory.json").read_text())
    assert tiny["error"] is None and len(tiny["turns"]) == 2 and tiny["turns"][0]["output_tokens"] > 0
    good = json.loads((paths["scripted"] / "trajectory.json").read_text())
    assert good["correct"] is True and good["turns"][0]["box_original"] is not None
    assert (paths["scripted"] / "crop_turn1.png").is_file() and (paths["scripted"] / "overlay.png").is_file()
