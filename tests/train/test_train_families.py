"""One MGPO optimisation step on the tiny model of every family (mgpo.families): turn 1 names a box in the family's
convention, the crop of the original comes back as the turn-2 message (its image tokens counted in the family's
frame), and every parameter moves; then the bar: `mgpo train` on Qwen3-VL, and `mgpo infer` loads its output."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from train_helpers import SMALL, script, write_images
from typer.testing import CliRunner

from mgpo import families, imaging
from mgpo.cli import app
from mgpo.episode import Episode
from mgpo.train.data import open_image

# a box each family's convention reads as a valid region of the small test views
BOXES = {"resized-pixels": [20, 30, 150, 120], "normalized-1000": [100, 150, 700, 650]}
TURN2 = ["The square is blue. \\boxed{B}", "\\boxed{C}"]
PIXELS = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]


def _trainer(model: Path, data: Path, out: Path):
    from mgpo.backends.hf import load_processor
    from mgpo.train.config import make_config
    from mgpo.train.data import load_training_data
    from mgpo.train.rewards import reward_functions
    from mgpo.train.run import build_args, turn_cap
    from mgpo.train.trainer import MGPOTrainer

    settings = {"num_generations": 2, "per_device_train_batch_size": 2, "max_steps": 1, "save_strategy": "no",
                "learning_rate": 0.1, "max_completion_length": 1200}  # fmt: skip
    cfg = make_config(algo="mgpo", data=str(data), model=str(model), output_dir=str(out), turn_max_new_tokens=24,
                      protocol=dict(SMALL), trl=settings)  # fmt: skip
    proto = cfg.protocol_config()
    processor = load_processor(cfg.model, proto.processor_min_pixels, proto.processor_max_pixels)
    return MGPOTrainer(
        model=cfg.model, reward_funcs=reward_functions(cfg.rewards), args=build_args(cfg, processor),
        train_dataset=load_training_data(cfg.data), processing_class=processor, protocol_config=proto,
        turn_max_new_tokens=turn_cap(cfg),
    )  # fmt: skip


@pytest.mark.parametrize("name", families.NAMES)
def test_one_mgpo_step_with_a_crop_on_every_family(name: str, family_model_dirs, vqa_dir, tmp_path) -> None:
    trainer = _trainer(family_model_dirs[name], vqa_dir, tmp_path / "out")
    family = families.get_family(name)
    assert (trainer.protocol.model_family, trainer.protocol.unit) == (name, family.frame_unit)
    box = BOXES[family.coords]
    script(trainer, [f'Looking.\n```json\n[{{"bbox_2d": {box}, "label": "cube"}}]\n```'], TURN2)
    row = trainer.train_dataset[0]
    text = f'Looking.\n```json\n[{{"bbox_2d": {box}, "label": "cube"}}]\n```'
    cfg = trainer.protocol
    episode = Episode(open_image(row["image"]), row["question"], list(row["choices"]), cfg)
    assert episode.step(text).cropped
    crop_frame = imaging.model_frame(episode.view.size, cfg.processor_min_pixels, cfg.processor_max_pixels, cfg.unit)
    out = trainer._generate_and_score_completions([dict(row) for _ in range(2)])
    pad = trainer._tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for i in range(2):
        ids = out["completion_ids"][i][: int(out["completion_mask"][i].sum())].tolist()
        # the turn-2 message shows the crop: its image tokens are those of the crop's frame in this family's unit
        assert ids.count(pad) == imaging.visual_tokens(crop_frame, cfg.unit) > 0

    script(trainer, [f'```json\n[{{"bbox_2d": {box}, "label": "cube"}}]\n```', "no box"], TURN2)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["mgpo/valid_box_ratio"] == 0.5 and 0 < log["mgpo/crop_area_fraction"] < 1
    assert log["reward_std"] > 0
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not unchanged, f"{name}: parameters not updated: {unchanged[:5]}"


def test_train_on_qwen3_vl_then_infer_loads_it(family_model_dirs, tmp_path) -> None:
    folder = tmp_path / "vstar"
    folder.mkdir()
    question = "What is the colour of the square? (A) red (B) blue"
    rows = [{"image": n, "text": question, "label": "A", "category": "direct_attributes", "question_id": i}
            for i, n in enumerate(write_images(folder, 2))]  # fmt: skip
    pd.DataFrame(rows).to_parquet(folder / "test.parquet")
    out = tmp_path / "t3-trained"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--algo", "mgpo", "--data", str(folder), "--model",
                                 str(family_model_dirs["qwen3_vl"]), "--max-steps", "1", "--output-dir", str(out),
                                 "--num-generations", "2", "--batch-size", "2", "--turn-max-new-tokens", "8",
                                 *PIXELS])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "trained 1 step(s)" in result.output
    resolved = json.loads((out / "mgpo_train.json").read_text())["protocol_resolved"]
    assert (resolved["model_family"], resolved["frame_unit"], resolved["coords"]) == ("qwen3_vl", 32, "normalized-1000")
    result = runner.invoke(app, ["infer", str(folder / "img_0.png"), "What colour?", "-c", "red", "-c", "blue",
                                 "--model", str(out), "--json", *PIXELS])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    traj = json.loads(result.output[result.output.index("{") :])
    assert traj["error"] is None and traj["model_family"] == "qwen3_vl" and len(traj["turns"]) == 2
    assert all(t["frame_size"][0] % 32 == 0 and t["frame_size"][1] % 32 == 0 for t in traj["turns"])
