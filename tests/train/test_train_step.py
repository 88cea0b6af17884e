"""Real TRL optimisation steps on the tiny Qwen2.5-VL: MGPO (scripted and really sampled), beta > 0, GRPO, SFT."""

from __future__ import annotations

import math

import pytest
import torch
from train_helpers import BOX_TURN, script

from mgpo.backends.hf import vision_token_ids

TURN2 = ["The square is blue. \\boxed{B}", "\\boxed{C}"]  # reward 1, 0, 1, 0: non-constant within the group


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_one_step_updates_every_parameter_vision_tower_included(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir)
    script(trainer, [BOX_TURN, "no box"], TURN2)
    before = _snapshot(trainer.model)
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["reward"] == 0.5 and log["reward_std"] > 0
    assert log["mgpo/valid_box_ratio"] == 0.5 and log["mgpo/fallback_rate"] == 0.5
    assert 0 < log["mgpo/crop_area_fraction"] < 1
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    assert any(n.startswith("model.visual") for n in before), "the vision tower is among the parameters checked"


def test_beta_positive_trains_with_a_reference_model(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir, beta=0.04)
    assert trainer.ref_model is not None
    script(trainer, [BOX_TURN], TURN2)
    trainer.train()
    log = trainer.state.log_history[0]
    assert "kl" in log and math.isfinite(log["kl"]) and log["kl"] >= 0
    assert math.isfinite(log["loss"])


def test_real_sampling_from_the_tiny_model_never_samples_vision_tokens(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir, learning_rate=1e-3)
    real = trainer._generate_single_turn
    outputs: list[list[int]] = []

    def recording(*args, **kwargs):
        ids, lps = real(*args, **kwargs)
        outputs.extend(ids)
        return ids, lps

    trainer._generate_single_turn = recording
    trainer.train()
    banned = set(vision_token_ids(trainer._tokenizer))
    assert len(banned) == 5
    assert outputs and not any(t in banned for ids in outputs for t in ids)
    log = trainer.state.log_history[0]
    for key in ("reward", "reward_std", "mgpo/valid_box_ratio", "mgpo/turn1_length", "mgpo/turn2_length"):
        assert key in log
    assert log["mgpo/turn2_skipped_ratio"] == 0  # both turns ran for every rollout


def test_grpo_baseline_runs_a_step_single_turn(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir, algo="grpo")
    assert trainer.protocol.single_turn
    tok = trainer._tokenizer
    seen = []

    def fake(prompt_ids, images, fields, num_generations, has_tool_images=False):
        seen.append(prompt_ids)
        texts = ["\\boxed{B}", "\\boxed{A}"]
        return [tok(texts[i % 2], add_special_tokens=False)["input_ids"] + [trainer.end_of_turn_id]
                for i in range(len(prompt_ids))], None  # fmt: skip

    trainer._generate_single_turn = fake
    before = _snapshot(trainer.model)
    trainer.train()
    assert len(seen) == 1  # one turn
    text = tok.decode(seen[0][0])
    assert "The choices are listed below" in text and "Out the coordinates" not in text  # the direct prompt
    log = trainer.state.log_history[0]
    assert log["reward"] == 0.5
    assert any(not torch.equal(p.detach(), before[n]) for n, p in trainer.model.named_parameters())


def test_sft_baseline_runs_a_step(vqa_dir, tiny_model_dir, tmp_path):
    from train_helpers import SMALL

    from mgpo.train.config import make_config
    from mgpo.train.run import train

    cfg = make_config(
        algo="sft", data=str(vqa_dir), model=str(tiny_model_dir), output_dir=str(tmp_path / "sft"),
        protocol=dict(SMALL), trl={"max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-2,
                                   "save_strategy": "no"},
    )  # fmt: skip
    result = train(cfg, echo=lambda *_: None)
    assert result.steps == 1
    assert (result.output_dir / "model.safetensors").is_file()
    assert (result.output_dir / "processor_config.json").is_file()


def test_lora_trains_and_saves_a_merged_model_infer_loads(vqa_dir, tiny_model_dir, tmp_path):
    from train_helpers import SMALL

    from mgpo.engine import build_engine
    from mgpo.infer import infer
    from mgpo.train.config import make_config
    from mgpo.train.run import train

    cfg = make_config(
        algo="mgpo", data=str(vqa_dir), model=str(tiny_model_dir), output_dir=str(tmp_path / "lora"), lora=True,
        turn_max_new_tokens=16, rewards=["accuracy", "format"], protocol=dict(SMALL),
        trl={"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2, "save_strategy": "no",
             "beta": 0.04},
    )  # fmt: skip
    result = train(cfg, echo=lambda *_: None)
    assert result.steps == 1
    assert not (result.output_dir / "adapter_config.json").exists()  # merged: a plain model directory
    engine = build_engine("hf", str(result.output_dir), cfg.protocol_config(), device="cpu")
    traj = infer(engine, vqa_dir / "img_0.png", "What colour?", ["red", "blue"], "B")
    assert traj.error is None and len(traj.turns) == 2


def test_masked_tokens_reach_neither_policy_loss_nor_kl(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir, beta=0.5)
    script(trainer, [BOX_TURN, "no box"], TURN2)
    row = trainer.train_dataset[0]
    out = trainer._generate_and_score_completions([dict(row) for _ in range(4)])
    mask = out["tool_mask"] * out["completion_mask"]
    assert (out["tool_mask"] == 0).any()

    def loss_with(shift):
        batch = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        batch["ref_per_token_logps"] = batch["ref_per_token_logps"] + shift
        with torch.no_grad():
            return trainer._compute_loss(trainer.model, batch).item()

    base = loss_with(0.0)
    assert loss_with((mask == 0).float() * 3.0) == pytest.approx(base, abs=1e-6)  # user-2 message: no effect
    assert loss_with(mask.float() * 3.0) != pytest.approx(base, abs=1e-4)  # model tokens: KL moves the loss
