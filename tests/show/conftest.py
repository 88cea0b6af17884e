"""An eval-style trajectories.jsonl built for real: synthetic images on disk, the real Engine, a scripted backend.

The scripted turns point at the drawn target in model-frame pixels, so every box field (box_model, box_original,
shown_box, fallback) is what the engine itself computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mgpo.synthetic import COLOURS, background, draw_shape
from mgpo.types import Trajectory

SIZE = (1200, 900)


@dataclass
class EvalRun:
    path: Path  # trajectories.jsonl
    rows: list[dict]
    trajectories: list[Trajectory]
    images: dict[str, Path]
    targets: dict[str, list[int]]


def _scene(seed: int, colour: str, box: list[int]) -> Image.Image:
    import random

    image = background(SIZE, random.Random(seed))
    draw_shape(ImageDraw.Draw(image), "cup", box, COLOURS[colour])
    return image


def _model_box(box: list[int], pad: int, frame: tuple[int, int]) -> list[int]:
    sx, sy = frame[0] / SIZE[0], frame[1] / SIZE[1]
    x1, y1, x2, y2 = box
    return [round((x1 - pad) * sx), round((y1 - pad) * sy), round((x2 + pad) * sx), round((y2 + pad) * sy)]


def _turn1(box: list[int]) -> str:
    return f'The cup is small.\n```json\n[{{"bbox_2d": {json.dumps(box)}, "label": "cup"}}]\n```'


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory: pytest.TempPathFactory) -> EvalRun:
    from mgpo import imaging
    from mgpo.engine import build_engine
    from mgpo.protocol import ProtocolConfig
    from mgpo.types import Sample

    root = tmp_path_factory.mktemp("evalrun")
    cfg = ProtocolConfig.paper()
    view = imaging.pre_resize_size(SIZE, cfg.min_pixels, cfg.max_pixels)
    frame = imaging.model_frame(view, cfg.processor_min_pixels, cfg.processor_max_pixels)
    specs = [  # id, task, category, colour, target box, scripted turns, ground truth
        ("s1", "vstar_attr", "color", "red", [700, 500, 760, 560], "right"),
        ("s2", "vstar_pos", "position", "blue", [200, 150, 260, 210], "wrong_box"),
        ("s3", "vstar_attr", "color", "green", [900, 650, 960, 710], "no_box"),
    ]
    samples, scripts, images, targets = [], [], {}, {}
    for n, (sid, _task, _cat, colour, box, kind) in enumerate(specs):
        path = root / f"{sid}.png"
        _scene(n, colour, box).save(path)
        images[sid], targets[sid] = path, box
        samples.append(Sample(path, "What colour is the cup?", ["red", "blue", "green"], "ABC"[n], id=sid, gt_box=box))
        if kind == "right":
            turns = [_turn1(_model_box(box, 40, frame)), "In the crop the cup is red.\n\\boxed{A}"]
        elif kind == "wrong_box":
            turns = [_turn1(_model_box([800, 600, 860, 660], 60, frame)), "I cannot see it; maybe \\boxed{C}"]
        else:
            turns = ["The cup is somewhere.", "Looking again at the whole image: \\boxed{A}"]
        scripts.append({"id": sid, "turns": turns})
    trajectories = build_engine("scripted", responses=scripts, protocol=cfg).run(samples)
    rows = [
        {
            "task": task,
            "doc_id": sid,
            "category": cat,
            "trajectory": traj.to_dict(),
            "prediction": traj.answer,
            "ground_truth": traj.ground_truth,
        }
        for (sid, task, cat, *_), traj in zip(specs, trajectories, strict=True)
    ]
    path = root / "trajectories.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return EvalRun(path, rows, trajectories, images, targets)
