"""The SFT baseline: question -> answer with TRL's SFTTrainer, on the same data path and the same single-turn prompt
(and image pipeline) as the GRPO baseline. The target is the final answer as the eval extractor reads it."""

from __future__ import annotations

from typing import Any

from mgpo import imaging
from mgpo.episode import Episode
from mgpo.protocol import ProtocolConfig
from mgpo.train.data import open_image


def sft_target(letter: str) -> str:
    return f"\\boxed{{{letter}}}"


def placeholder_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Move images out of the messages (TRL's collator takes them as a separate ``images`` list)."""
    images, out = [], []
    for m in messages:
        parts = []
        for part in m["content"]:
            if part["type"] == "image":
                images.append(part["image"])
                parts.append({"type": "image"})
            else:
                parts.append(part)
        out.append({**m, "content": parts})
    return out, images


def to_sft_rows(batch: dict[str, list], cfg: ProtocolConfig, max_image_pixels: int) -> dict[str, list]:
    """Normalised rows -> TRL prompt-completion rows with their (pre-resized) images, built lazily per batch."""
    prompts, completions, images = [], [], []
    for image, question, choices, answer in zip(
        batch["image"], batch["question"], batch["choices"], batch["answer"], strict=True
    ):
        ep = Episode(open_image(image, max_image_pixels), question, list(choices), cfg)
        msgs, imgs = placeholder_messages(ep.messages)
        prompts.append(msgs)
        completions.append([{"role": "assistant", "content": [{"type": "text", "text": sft_target(answer)}]}])
        images.append(imgs)
    return {"prompt": prompts, "completion": completions, "images": images}


def make_sft_trainer(cfg: Any, args: Any, dataset: Any, processor: Any, proto: ProtocolConfig, peft_config: Any):
    from trl import SFTTrainer

    max_pixels = cfg.max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS
    train_set = dataset.with_transform(lambda batch: to_sft_rows(batch, proto, max_pixels))
    return SFTTrainer(
        model=cfg.model, args=args, train_dataset=train_set, processing_class=processor, peft_config=peft_config
    )
