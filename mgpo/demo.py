"""`mgpo demo`: everything offline. A synthetic high-res image, the tiny local model, a full infer with the
trajectory view; then the same protocol replaying a well-grounded answer, to show a crop end to end."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from mgpo.artifacts import save_artifacts
from mgpo.engine import build_engine
from mgpo.infer import infer
from mgpo.synthetic import demo_scene
from mgpo.tiny import build_tiny_model
from mgpo.view import print_trajectory

QUESTION = "What is the color of the cup?"
CHOICES = ["red", "blue", "green", "yellow"]


def run_demo(out_dir: str | Path, console: Console) -> dict[str, Path]:
    """Run the demo into out_dir and print both trajectories; return where things were written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image, target = demo_scene()
    image_path = out / "scene.png"
    image.save(image_path)
    model_dir = out / "tiny-model"
    if not (model_dir / "config.json").is_file():
        build_tiny_model(model_dir)
    console.print(Rule("1. tiny random Qwen2.5-VL (real model code, untrained weights: expect nonsense)"))
    engine = build_engine("hf", str(model_dir), device="cpu")
    traj = infer(engine, image_path, QUESTION, CHOICES, ground_truth="A")
    save_artifacts(traj, image, out / "tiny")
    print_trajectory(traj, console, image=image)

    console.print(Rule("2. the same protocol replaying what a well-grounded model answers"))
    frame = traj.turns[0].frame_size
    sx, sy = frame[0] / image.width, frame[1] / image.height
    x1, y1, x2, y2 = target.box
    pad = (x2 - x1) * 2
    box = [int((x1 - pad) * sx), int((y1 - pad) * sy), int((x2 + pad) * sx), int((y2 + pad) * sy)]
    turn1 = f'The cup is small.\n```json\n[{{"bbox_2d": {json.dumps(box)}, "label": "cup"}}]\n```'
    turn2 = "In the enlarged sub-image the cup is clearly red, so the answer is (A).\n\\boxed{A}"
    scripted = build_engine("scripted", responses=[{"turns": [turn1, turn2]}])
    good = infer(scripted, image_path, QUESTION, CHOICES, ground_truth="A")
    save_artifacts(good, image, out / "scripted")
    print_trajectory(good, console, image=image)
    files = "scene.png, tiny/ and scripted/ (trajectory.json, crop_turn1.png, overlay.png)"
    console.print(f"\nfiles in {escape(str(out))}/: {files}")
    return {"image": image_path, "tiny": out / "tiny", "scripted": out / "scripted", "model": model_dir}
