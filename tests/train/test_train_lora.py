"""LoRA that provably applies: only adapter weights train, the merged model is not the base, and an unmerged adapter
(`--lora --no-merge-lora`) is what `mgpo infer --model` loads (base + adapter via peft)."""

from __future__ import annotations

from pathlib import Path

import torch
from train_helpers import BOX_TURN, SMALL, script

TURN2 = ["The square is blue. \\boxed{B}", "\\boxed{C}"]


def _cfg(vqa_dir: Path, tiny_model_dir: Path, out: Path, merge: bool = True, algo: str = "mgpo"):
    from mgpo.train.config import make_config

    if algo == "sft":  # a real gradient on every step (a random model's rollouts all score 0: GRPO would not move)
        return make_config(
            algo="sft", data=str(vqa_dir), model=str(tiny_model_dir), output_dir=str(out), lora=True,
            merge_lora=merge, protocol=dict(SMALL),
            trl={"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 0.05, "save_strategy": "no"},
        )  # fmt: skip
    return make_config(
        algo="mgpo", data=str(vqa_dir), model=str(tiny_model_dir), output_dir=str(out), lora=True, merge_lora=merge,
        turn_max_new_tokens=40, protocol=dict(SMALL),
        trl={"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2, "save_strategy": "no",
             "learning_rate": 0.05, "max_completion_length": 1200},
    )  # fmt: skip


def _logits(model, processor, image_path: Path) -> torch.Tensor:
    from PIL import Image

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}]
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.open(image_path)], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def test_only_adapter_weights_train_and_they_move(vqa_dir, tiny_model_dir, tmp_path):
    from mgpo.backends.hf import load_processor
    from mgpo.train.data import load_training_data
    from mgpo.train.rewards import reward_functions
    from mgpo.train.run import build_args, lora_config, turn_cap
    from mgpo.train.trainer import MGPOTrainer

    cfg = _cfg(vqa_dir, tiny_model_dir, tmp_path / "o")
    proto = cfg.protocol_config()
    processor = load_processor(cfg.model, proto.processor_min_pixels, proto.processor_max_pixels)
    trainer = MGPOTrainer(
        model=cfg.model, reward_funcs=reward_functions(cfg.rewards), args=build_args(cfg, processor),
        train_dataset=load_training_data(cfg.data), processing_class=processor, protocol_config=proto,
        turn_max_new_tokens=turn_cap(cfg), peft_config=lora_config(cfg),
    )  # fmt: skip
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any("visual" in n for n in trainable) and any("language_model" in n for n in trainable)
    script(trainer, [BOX_TURN], TURN2)
    trainer.train()
    params = dict(trainer.model.named_parameters())
    moved = [n for n, before in trainable.items() if not torch.equal(params[n].detach(), before)]
    assert any("lora_B" in n for n in moved)  # B starts at zero: moving it is what makes the adapter apply
    assert all(torch.equal(params[n].detach(), before) for n, before in frozen.items())


def test_merged_output_differs_from_the_base_and_the_adapter_alone_loads_in_infer(vqa_dir, tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    from mgpo.backends.hf import load_processor
    from mgpo.engine import build_engine
    from mgpo.infer import infer
    from mgpo.train.run import train

    processor = load_processor(str(tiny_model_dir), 3136, 12_845_056)
    image = vqa_dir / "img_0.png"
    base = _logits(AutoModelForImageTextToText.from_pretrained(tiny_model_dir), processor, image)

    merged_cfg = _cfg(vqa_dir, tiny_model_dir, tmp_path / "merged", algo="sft")
    merged_dir = train(merged_cfg, echo=lambda *_: None).output_dir
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    assert (merged_dir / "adapter" / "adapter_config.json").is_file()  # the adapter it was merged from, kept
    merged = _logits(AutoModelForImageTextToText.from_pretrained(merged_dir), processor, image)
    assert (merged - base).abs().max() > 1e-3, "the merged model is the base model: the adapter never applied"

    adapter_cfg = _cfg(vqa_dir, tiny_model_dir, tmp_path / "adapter", merge=False, algo="sft")
    adapter_dir = train(adapter_cfg, echo=lambda *_: None).output_dir
    assert (adapter_dir / "adapter_config.json").is_file() and not (adapter_dir / "model.safetensors").exists()
    engine = build_engine("hf", str(adapter_dir), merged_cfg.protocol_config().paper(**SMALL), device="cpu")
    loaded = _logits(engine.backend.model, processor, image)
    assert (loaded - base).abs().max() > 1e-3, "infer loaded the base model without the adapter"
    assert torch.allclose(loaded, merged, atol=1e-4)  # the same training (seeded): base + adapter == merged
    traj = infer(engine, image, "What colour?", ["red", "blue"], "B")
    assert traj.error is None and len(traj.turns) == 2
