"""`mgpo eval` for another model family: the family read from --model DIR reaches every mode, boxes are read in
0-1000 on a 32-px frame, and the results, the trajectories and the direct-prompt ablation all record the family."""

from __future__ import annotations

import json
from pathlib import Path

from mgpo import imaging
from mgpo.eval.run_log import read_rows
from mgpo.eval.runner import EvalOptions, run_eval
from mgpo.grounding import map_to_original
from mgpo.protocol import PAPER_PIXELS, PROCESSOR_PIXELS, ProtocolConfig
from mgpo.types import Box

BOX = [250, 250, 500, 500]


def test_eval_reads_boxes_in_the_familys_convention(synth_dir: Path, tmp_path: Path, family_model_dirs) -> None:
    import pandas as pd

    frame = pd.read_parquet(synth_dir / "test.parquet")
    turn1 = f'```json\n[{{"bbox_2d": {BOX}, "label": "target"}}]\n```'
    lines = [{"id": r.question_id, "turns": [turn1, f"\\boxed{{{r.label}}}"]} for r in frame.itertuples()]
    responses = tmp_path / "r.jsonl"
    responses.write_text("".join(json.dumps(x) + "\n" for x in lines))
    model = str(family_model_dirs["qwen3_vl"])
    opts = EvalOptions(tasks=["mgpo_vstar"], output_dir=tmp_path / "o", data=synth_dir, model=model,
                       backend="scripted", responses=responses, limit=4, ablate=True,
                       protocol=ProtocolConfig.paper())  # fmt: skip
    results = run_eval(opts)
    assert results["tasks"]["mgpo_vstar"]["overall"]["accuracy"] == 100.0
    assert results["config"]["protocol"]["model_family"] == "qwen3_vl"
    rows = read_rows(tmp_path / "o" / "trajectories.jsonl")
    assert {r["trajectory"]["model_family"] for r in rows} == {"qwen3_vl"}
    grounded = [r["trajectory"] for r in rows if r["trajectory"]["protocol"]["single_turn"] is False]
    assert len(grounded) == 4 and len(rows) == 8  # and the 4 direct-prompt rows
    for traj in grounded:
        first = traj["turns"][0]
        w, h = first["image_size"]
        view = imaging.pre_resize_size((w, h), *PAPER_PIXELS)
        fw, fh = imaging.model_frame(view, *PROCESSOR_PIXELS, 32)
        assert first["frame_size"] == [fw, fh] and fw % 32 == 0 and fh % 32 == 0
        in_frame = Box(BOX[0] * fw / 1000, BOX[1] * fh / 1000, BOX[2] * fw / 1000, BOX[3] * fh / 1000)
        assert first["box_original"] == map_to_original(in_frame, (fw, fh), [0, 0, w, h])
