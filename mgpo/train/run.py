"""`mgpo train` end to end: check the data, build TRL's config, train, and save a model `mgpo infer` loads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgpo import families, imaging
from mgpo.errors import MgpoError
from mgpo.train.config import TrainConfig

LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "mgpo_train.json"
ADAPTER_DIR = "adapter"  # a merged LoRA run keeps its adapter here
STEP_KEYS = (
    ("reward", "reward"),
    ("reward_std", "std"),
    ("mgpo/valid_box_ratio", "valid_box"),
    ("mgpo/fallback_rate", "fallback"),
    ("mgpo/crop_area_fraction", "crop_area"),
    ("mgpo/turn1_length", "turn1"),
    ("mgpo/turn2_length", "turn2"),
    ("loss", "loss"),
    ("kl", "kl"),
)


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    log_file: Path


def train(cfg: TrainConfig, echo: Any = print) -> TrainResult:
    """Train per ``cfg``; every input is checked before a model is loaded."""
    from mgpo.backends.hf import _check_local, load_processor
    from mgpo.train.data import check_images, load_training_data

    if not cfg.data:
        raise MgpoError("no training data: add --data FILE|FOLDER|HUB_ID")
    proto = families.for_model(cfg.protocol_config(), cfg.model)  # the model family's frame and convention
    dataset = load_training_data(cfg.data, cfg.split, cfg.limit)
    resume = _resume(cfg)  # a wrong --resume is one line now, before the model loads
    _check_local(cfg.model)
    # every image decoded once now: a corrupt one would otherwise abort the run at the step that first samples it
    echo(f"checking {len(dataset)} training image(s)")
    check_images(dataset, str(cfg.data), cfg.max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS, proto.image_mode,
                 proto.view_pixels)  # fmt: skip
    processor = load_processor(cfg.model, proto.processor_min_pixels, proto.processor_max_pixels)
    proto = families.with_processor(proto, processor)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume is None:  # a fresh run starts a fresh log; a resumed one appends to its own
        (out / LOG_FILE).unlink(missing_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps({**cfg.to_dict(), "protocol_resolved": proto.to_dict()}, indent=2))
    args = build_args(cfg, processor)
    peft_config = lora_config(cfg)
    logger = StepLogger(out / LOG_FILE, echo)
    if cfg.algo == "sft":
        from mgpo.train.sft import make_sft_trainer

        trainer = make_sft_trainer(cfg, args, dataset, processor, proto, peft_config)
    else:
        from mgpo.train.rewards import reward_functions
        from mgpo.train.trainer import MGPOTrainer

        trainer = MGPOTrainer(
            model=cfg.model,
            reward_funcs=reward_functions(cfg.rewards, proto),
            args=args,
            train_dataset=dataset,
            processing_class=processor,
            peft_config=peft_config,
            protocol_config=proto,
            turn_max_new_tokens=turn_cap(cfg),
            max_image_pixels=cfg.max_image_pixels,
        )
    quiet_transformers_log(trainer)
    trainer.add_callback(logger.callback())
    trainer.train(resume_from_checkpoint=resume)
    save_final(trainer, processor, out, cfg)
    return TrainResult(out, trainer.state.global_step, out / LOG_FILE)


def turn_cap(cfg: TrainConfig) -> int:
    """Per-turn token cap: the flag, else the checkpoint's generation_config cap, else the paper's 8192."""
    if cfg.turn_max_new_tokens:
        return cfg.turn_max_new_tokens
    try:
        from transformers import GenerationConfig

        cap = GenerationConfig.from_pretrained(cfg.model).max_new_tokens
    except Exception:
        cap = None
    return cap or 8192


def build_args(cfg: TrainConfig, processor: Any):
    """TRL's GRPOConfig (or SFTConfig) from mgpo's defaults, the preset and the pass-through settings."""
    import torch
    from trl import GRPOConfig, SFTConfig

    from mgpo.backends.hf import vision_token_ids

    proto = cfg.protocol_config()
    on_gpu = torch.cuda.is_available()
    base: dict[str, Any] = {
        "output_dir": cfg.output_dir,
        "logging_steps": 1,
        "bf16": on_gpu,
        "report_to": "none",
        "save_only_model": False,
        "dataloader_pin_memory": on_gpu,
    }
    if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # several CPU processes (accelerate launch --cpu, or no GPU): without use_cpu the ranks never join one
        # gloo DDP group, so each trains alone and their weights drift apart
        base["use_cpu"] = True
    if cfg.algo == "sft":
        base.update(
            {"max_length": None, "remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}}
        )
        merged = {**base, **cfg.trl}
        try:
            return SFTConfig(**merged)
        except (ValueError, TypeError) as exc:
            raise MgpoError(f"invalid training settings: {exc}") from exc
    cap = turn_cap(cfg)
    if "max_completion_length" not in cfg.trl:
        # both turns at the per-turn cap, plus the turn-2 message: its text and at most the crop's image tokens
        unit = families.unit_of(getattr(processor, "image_processor", None)) or proto.unit
        turn2_message = imaging.max_visual_tokens(proto.crop_max_pixels, unit) + 512
        base["max_completion_length"] = cap if proto.single_turn else 2 * cap + turn2_message
    merged = {**base, **cfg.trl}
    suppress = vision_token_ids(processor.tokenizer)
    gen = dict(merged.get("generation_kwargs") or {})
    if merged.get("use_vllm"):
        gen.setdefault("logit_bias", {i: -100.0 for i in suppress})  # vLLM has no suppress_tokens
    else:
        gen.setdefault("suppress_tokens", suppress)
    merged["generation_kwargs"] = gen
    try:
        return GRPOConfig(**merged)
    except (ValueError, TypeError) as exc:
        raise MgpoError(f"invalid training settings: {str(exc).splitlines()[0]}") from exc


def lora_config(cfg: TrainConfig):
    if not cfg.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def _resume(cfg: TrainConfig) -> str | bool | None:
    r = cfg.resume_from_checkpoint
    if r in (None, "", False):
        return None
    if r in ("latest", "last", True):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(cfg.output_dir) if Path(cfg.output_dir).is_dir() else None
        if last is None:
            raise MgpoError(f"{cfg.output_dir}: no checkpoint-N folder to resume from")
        return last
    if not Path(str(r)).is_dir():
        raise MgpoError(f"{r}: checkpoint folder not found; give a checkpoint-N folder or 'latest'")
    return str(r)


def save_final(trainer: Any, processor: Any, out: Path, cfg: TrainConfig) -> None:
    """Save a full model + processor to ``out`` (LoRA merged unless asked not to): loadable by `mgpo infer --model`."""
    trainer.accelerator.wait_for_everyone()
    if cfg.lora and cfg.merge_lora:
        # the adapter is saved first by the Trainer, which gathers it from every process (DeepSpeed ZeRO-3 shards
        # parameters: merging the live, partitioned model would write placeholders); the main process then merges
        # the saved adapter into a freshly loaded base on CPU
        adapter = out / ADAPTER_DIR
        trainer.save_model(str(adapter))
        trainer.accelerator.wait_for_everyone()
        if trainer.accelerator.is_main_process:
            merge_adapter(cfg.model, adapter, out)
    else:
        trainer.save_model(str(out))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(out)
        (out / "README.md").write_text(model_card(cfg), encoding="utf-8")


def merge_adapter(base_model: str, adapter: Path, out: Path) -> None:
    """Load ``base_model`` on CPU, apply the LoRA adapter saved in ``adapter`` and save the merged model to ``out``."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(base_model, dtype="auto")
    PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().save_pretrained(out)


def model_card(cfg: TrainConfig) -> str:
    """A model card that names the base model and the command that trained it (TRL's says "[None]" for a local
    base model)."""
    import shlex
    import sys

    command = shlex.join(["mgpo", *sys.argv[1:]]) if Path(sys.argv[0]).name == "mgpo" else None
    lines = [
        "---",
        f"base_model: {cfg.model}",
        "library_name: transformers",
        "tags: [mgpo, grounding, vision-language]",
        "---",
        "",
        f"# {Path(cfg.output_dir).name}",
        "",
        f"Fine-tuned from `{cfg.model}` with mgpo (`--algo {cfg.algo}`, preset `{cfg.preset}`) on `{cfg.data}`.",
        "",
    ]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += ["Settings: `mgpo_train.json` beside this file; per-step figures: `train_log.jsonl`.", ""]
    return "\n".join(lines)


def quiet_transformers_log(trainer: Any) -> None:
    """One line per step: the Trainer's own printer (the raw logs dict, again) goes; its progress bar stays."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class ProgressOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ProgressOnly)


class StepLogger:
    """Writes every logged step to a JSONL file and echoes one compact line per step."""

    def __init__(self, path: Path, echo: Any):
        self.path, self.echo = path, echo

    def callback(self):
        from transformers import TrainerCallback

        logger = self

        class _Cb(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if not state.is_world_process_zero or not logs:
                    return
                row = {"step": state.global_step, **logs}
                with logger.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, default=float) + "\n")
                parts = [f"{short}={logs[k]:.4g}" for k, short in STEP_KEYS if isinstance(logs.get(k), int | float)]
                if parts:
                    from tqdm.auto import tqdm

                    with tqdm.external_write_mode():  # on its own line, not glued to the progress bar
                        logger.echo(f"step {state.global_step}: " + " ".join(parts))

        return _Cb()
