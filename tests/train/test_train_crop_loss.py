"""The crop reaches the loss: the training forward pass (TRL's, on the batch MGPOTrainer builds) sees the turn-2 image
where its tokens are, so its pixels move the log-probs of turn 2 and of nothing before it; and every image block of
every sequence has exactly as many image tokens as the vision tower gives features (TRL silently drops all images of
a batch when they disagree, and the loss still falls). The same holds for the fallback image."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image, ImageOps
from train_helpers import BOX_TURN, script

import mgpo.episode

TURN2 = ["The square is blue. \\boxed{B}", "\\boxed{A}"]


def _rollout(trainer: Any, turn1: list[str], n: int = 2) -> tuple[dict[str, Any], list[Any]]:
    """One real rollout batch on scripted text; returns TRL's batch and the rollouts (episodes) behind it."""
    script(trainer, turn1, TURN2)
    seen: list[Any] = []
    log = trainer._log_rollout

    def keep(episodes, *args):
        seen.extend(episodes)
        return log(episodes, *args)

    trainer._log_rollout = keep
    row = trainer.train_dataset[0]
    out = trainer._generate_and_score_completions([dict(row) for _ in range(n)])
    trainer._log_rollout = log
    return out, seen


def _logps(trainer: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Per-token log-probs of the completion, by the call TRL's _compute_loss makes."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention, batch["completion_ids"].size(1),
            pixel_values=batch.get("pixel_values"), image_grid_thw=batch.get("image_grid_thw"),
            num_images=batch.get("num_images"), mm_token_type_ids=batch.get("mm_token_type_ids"),
        )  # fmt: skip
    return logps


def _turn_positions(batch: dict[str, Any], i: int) -> tuple[list[int], list[int]]:
    """Completion positions of turn 1 and of turn 2 of sample i: the two runs of loss-mask 1 around the user-2 run."""
    n = int(batch["completion_mask"][i].sum())
    mask = batch["tool_mask"][i][:n].tolist()
    first_zero = mask.index(0)
    last_zero = n - 1 - mask[::-1].index(0)
    return list(range(first_zero)), list(range(last_zero + 1, n))


def _image_blocks(ids: list[int], start: int, end: int, pad: int) -> list[int]:
    """Image-token count of each <|vision_start|> ... <|vision_end|> block of a sequence, in order."""
    blocks, count, inside = [], 0, False
    for t in ids:
        if t == start:
            inside, count = True, 0
        elif t == end and inside:
            blocks.append(count)
            inside = False
        elif inside:
            assert t == pad, "only image tokens inside a vision block"
            count += 1
    return blocks


def _check_tokens_match_features(trainer: Any, batch: dict[str, Any], rollouts: list[Any]) -> None:
    tok = trainer._tokenizer
    start, end, pad = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>"))
    grid = batch["image_grid_thw"]
    with torch.no_grad():
        features = trainer.model.model.get_image_features(batch["pixel_values"], grid).pooler_output
    assert len(features) == grid.shape[0] == sum(batch["num_images"])
    processor = trainer.processing_class.image_processor
    k = 0
    for i, ro in enumerate(rollouts):
        ids = torch.cat([batch["prompt_ids"][i][batch["prompt_mask"][i] == 1],
                         batch["completion_ids"][i][batch["completion_mask"][i] == 1]]).tolist()  # fmt: skip
        blocks = _image_blocks(ids, start, end, pad)
        assert len(blocks) == batch["num_images"][i] == len(ro.images) == 2
        for j, (count, image) in enumerate(zip(blocks, ro.images, strict=True)):
            assert count == features[k + j].shape[0], f"sample {i} image {j}: tokens != vision features"
            # and the features are of this very image: its grid and its pixels, as the processor makes them
            own = processor(images=[image], return_tensors="pt")
            assert torch.equal(grid[k + j], own["image_grid_thw"][0])
            rows = slice(int(grid[: k + j].prod(-1).sum()), int(grid[: k + j + 1].prod(-1).sum()))
            assert torch.equal(batch["pixel_values"][rows], own["pixel_values"])
        assert int((batch["mm_token_type_ids"][i] == 1).sum()) == sum(blocks)
        k += len(blocks)


def _second_image_rows(batch: dict[str, Any]) -> torch.Tensor:
    """A mask over pixel_values rows: those of each sequence's turn-2 image (its second)."""
    sizes = batch["image_grid_thw"].prod(-1).tolist()
    keep, k = torch.zeros(batch["pixel_values"].shape[0], dtype=torch.bool), 0
    offsets = [sum(sizes[:j]) for j in range(len(sizes) + 1)]
    for n in batch["num_images"]:
        keep[offsets[k + 1] : offsets[k + 2]] = True
        k += n
    return keep


def _assert_turn2_only(trainer: Any, base: dict[str, Any], changed: dict[str, Any]) -> None:
    a, b = _logps(trainer, base), _logps(trainer, changed)
    for i in range(a.shape[0]):
        t1, t2 = _turn_positions(base, i)
        assert t1 and t2
        assert torch.equal(a[i, t1], b[i, t1]), f"sample {i}: the turn-2 image moved turn-1 log-probs"
        assert (a[i, t2] - b[i, t2]).abs().max() > 1e-4, f"sample {i}: the turn-2 image does not reach turn 2"


@pytest.fixture
def trainer(vqa_dir, make_trainer):
    return make_trainer(vqa_dir, n=2, per_device_train_batch_size=2)


def test_the_crops_pixels_move_turn2_logprobs_and_not_turn1(trainer, monkeypatch):
    base, rollouts = _rollout(trainer, [BOX_TURN])
    assert all(ro.cropped for ro in rollouts)
    _check_tokens_match_features(trainer, base, rollouts)

    real = mgpo.episode.crop_original
    monkeypatch.setattr(mgpo.episode, "crop_original", lambda im, box: ImageOps.invert(real(im, box)))
    changed, again = _rollout(trainer, [BOX_TURN])
    assert [ro.view.size for ro in again] == [ro.view.size for ro in rollouts]  # same tokens, other pixels
    assert torch.equal(base["completion_ids"], changed["completion_ids"])
    assert torch.equal(base["prompt_ids"], changed["prompt_ids"])
    inverted = ~_second_image_rows(base)
    assert torch.equal(base["pixel_values"][inverted], changed["pixel_values"][inverted])  # turn 1's image as was
    assert not torch.equal(base["pixel_values"], changed["pixel_values"])
    _assert_turn2_only(trainer, base, changed)


def test_the_fallback_image_reaches_turn2_and_its_tokens_match_its_features(trainer):
    base, rollouts = _rollout(trainer, ["I cannot tell where to look."])
    assert not any(ro.cropped for ro in rollouts)
    assert all(ro.view is ro.full_view for ro in rollouts)  # the whole image again
    _check_tokens_match_features(trainer, base, rollouts)
    changed = dict(base)
    rows = _second_image_rows(base)
    changed["pixel_values"] = base["pixel_values"].clone()
    changed["pixel_values"][rows] = -base["pixel_values"][rows]  # only the turn-2 copy of the original
    _assert_turn2_only(trainer, base, changed)


def test_a_cropped_and_a_fallback_rollout_in_one_batch_keep_their_own_images(trainer):
    base, rollouts = _rollout(trainer, [BOX_TURN, "no box here"])
    assert [ro.cropped for ro in rollouts] == [True, False]
    assert isinstance(rollouts[0].view, Image.Image) and rollouts[0].view.size != rollouts[1].view.size
    _check_tokens_match_features(trainer, base, rollouts)
