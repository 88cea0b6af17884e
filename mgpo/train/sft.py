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

    if not proto.single_turn:
        return make_two_turn_sft_trainer(cfg, args, dataset, processor, proto, peft_config)

    max_pixels = cfg.max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS
    train_set = dataset.with_transform(lambda batch: to_sft_rows(batch, proto, max_pixels))
    return SFTTrainer(
        model=cfg.model, args=args, train_dataset=train_set, processing_class=processor, peft_config=peft_config
    )


# ---------------------------------------------------------------------------------------------------------------
# Two-turn SFT (`--algo sft --max-turns 2`): the MGPO conversation itself, with the ground-truth box as turn 1 and the
# answer as turn 2, the crop cut by the same Episode that infer, eval and MGPO training run. A warm start that
# teaches the protocol's format (and, on data with real boxes, where to look) before RL.


def box_turn(box: list[int], label: str = "target") -> str:
    """Turn 1 as the protocol asks for it: a ```json block with one bbox_2d (model-frame pixels) and a label."""
    import json

    return "```json\n" + json.dumps([{"bbox_2d": [int(v) for v in box], "label": label}]) + "\n```"


def frame_box(gt_box: list[float], original_size: tuple[int, int], frame: tuple[int, int]) -> list[int]:
    """A box in original pixels written in the model frame (the coordinates the model sees and emits)."""
    (w, h), (fw, fh) = original_size, frame
    x1, y1, x2, y2 = gt_box
    return [round(x1 * fw / w), round(y1 * fh / h), round(x2 * fw / w), round(y2 * fh / h)]


def two_turn_example(ep: Episode, gt_box: list[float], answer: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The whole two-turn conversation (placeholders for images) and its images: turn 1 names ``gt_box``, the
    episode crops it (or falls back, if the box breaks the rules), turn 2 answers."""
    step = ep.step(box_turn(frame_box(gt_box, ep.original.size, ep.frame)))
    assert step is not None
    messages = [*ep.messages, {"role": "assistant", "content": [{"type": "text", "text": sft_target(answer)}]}]
    return placeholder_messages(messages)


def to_two_turn_rows(batch: dict[str, list], cfg: ProtocolConfig, max_image_pixels: int) -> dict[str, list]:
    from mgpo.errors import MgpoError

    conversations, images = [], []
    for i, (image, question, choices, answer, gt_box) in enumerate(
        zip(batch["image"], batch["question"], batch["choices"], batch["answer"], batch["gt_box"], strict=True)
    ):
        if not gt_box:
            raise MgpoError(
                f"training row {batch['id'][i]}: no ground-truth box; two-turn SFT (--algo sft --max-turns 2) needs "
                "a bbox/gt_box column on every row (or use --max-turns 1)"
            )
        ep = Episode(open_image(image, max_image_pixels, cfg.image_mode), question, list(choices), cfg)
        msgs, imgs = two_turn_example(ep, list(gt_box), answer)
        conversations.append(msgs)
        images.append(imgs)
    return {"messages": conversations, "images": images}


class TwoTurnCollator:
    """Tokenises whole conversations with their images (the turn-2 crop inside, which TRL's vision collator cannot
    hold) and trains on the assistant turns only: each turn's text and its closing <|im_end|>, never the user
    messages or their image tokens."""

    def __init__(self, processor: Any):
        self.processor = processor
        tok = processor.tokenizer
        self.start = tok.convert_tokens_to_ids("<|im_start|>")
        self.end = tok.convert_tokens_to_ids("<|im_end|>")
        self.header = tok("assistant\n", add_special_tokens=False)["input_ids"]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [self.processor.apply_chat_template(e["messages"], tokenize=False) for e in examples]
        images = [img for e in examples for img in e["images"]]
        batch = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        batch["labels"] = self.assistant_labels(batch["input_ids"], batch["attention_mask"])
        return dict(batch)

    def assistant_labels(self, input_ids: Any, attention_mask: Any) -> Any:
        labels = input_ids.clone().fill_(-100)
        n = len(self.header)
        for b, row in enumerate(input_ids.tolist()):
            i = 0
            while i < len(row):
                if row[i] == self.start and row[i + 1 : i + 1 + n] == self.header:
                    j = i + 1 + n
                    while j < len(row) and row[j] != self.end:
                        j += 1
                    labels[b, i + 1 + n : j + 1] = input_ids[b, i + 1 + n : j + 1]
                    i = j
                i += 1
        return labels.masked_fill(attention_mask == 0, -100)


def make_two_turn_sft_trainer(cfg: Any, args: Any, dataset: Any, processor: Any, proto: ProtocolConfig, peft_config):
    from trl import SFTTrainer

    max_pixels = cfg.max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS
    train_set = dataset.with_transform(lambda batch: to_two_turn_rows(batch, proto, max_pixels))
    return SFTTrainer(
        model=cfg.model, args=args, train_dataset=train_set, processing_class=processor, peft_config=peft_config,
        data_collator=TwoTurnCollator(processor),
    )  # fmt: skip
