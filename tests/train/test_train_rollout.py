"""The MGPO rollout on a scripted policy: the exact loss mask, token by token, and the contract of the one
mgpo.episode.Episode that the trainer and the engine (`mgpo infer`, eval) both drive: the same outputs give the same
prompt tokens, the same scored response and the same verdict."""

from __future__ import annotations

import torch
from train_helpers import BOX_TURN, script

from mgpo import imaging, protocol
from mgpo.backends.hf import render_inputs
from mgpo.backends.scripted import ScriptedBackend
from mgpo.engine import Engine
from mgpo.grounding import ground
from mgpo.train.data import open_image
from mgpo.types import Sample

TURN1 = [
    BOX_TURN,  # valid box, stops right after the block
    BOX_TURN + "\nSo it is red: \\boxed{A}",  # valid box, then text that the protocol cuts
    "I cannot tell where to look.",  # no box: fallback to the original
    BOX_TURN.replace("[20, 30, 150, 120]", "[0, 0, 10, 10]"),  # a box, but too small: cut, then fallback
]
TURN2 = ["The square is blue. \\boxed{B}", "\\boxed{A}"]


def _segments(trainer, out, i):
    n = int(out["completion_mask"][i].sum())
    ids = out["completion_ids"][i][:n].tolist()
    mask = out["tool_mask"][i][:n].tolist()
    return ids, mask


def test_exact_loss_mask_segment_by_segment(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir)
    script(trainer, TURN1, TURN2)
    row = trainer.train_dataset[0]
    out = trainer._generate_and_score_completions([dict(row) for _ in range(4)])
    tok = trainer._tokenizer
    im_end, pad = trainer.end_of_turn_id, tok.convert_tokens_to_ids("<|image_pad|>")
    cfg = trainer.protocol
    original = open_image(row["image"])
    full_view = imaging.pre_resize(original, cfg.min_pixels, cfg.max_pixels, cfg.resampling)
    full_tokens = imaging.visual_tokens(imaging.model_frame(full_view.size, cfg.processor_min_pixels,
                                                            cfg.processor_max_pixels))  # fmt: skip
    frame = imaging.model_frame(full_view.size, cfg.processor_min_pixels, cfg.processor_max_pixels)
    step = ground(BOX_TURN, frame, [0, 0, *original.size], cfg)
    view = imaging.resize_crop(imaging.crop(original, step.box_original), cfg.crop_min_pixels, cfg.crop_max_pixels)
    crop_tokens = imaging.visual_tokens(imaging.model_frame(view.size, cfg.processor_min_pixels,
                                                            cfg.processor_max_pixels))  # fmt: skip
    assert crop_tokens != full_tokens  # so the check below tells crop from fallback
    kept = [BOX_TURN, BOX_TURN, TURN1[2], TURN1[3]]
    for i in range(4):
        ids, mask = _segments(trainer, out, i)
        t1 = tok(kept[i], add_special_tokens=False)["input_ids"] + [im_end]
        t2 = tok(TURN2[i % 2], add_special_tokens=False)["input_ids"] + [im_end]
        u2 = ids[len(t1) : len(ids) - len(t2)]
        assert ids[: len(t1)] == t1, f"sample {i}: turn 1 is the kept text + <|im_end|>"
        assert ids[len(ids) - len(t2) :] == t2
        # segment by segment: every turn-1 token (closing <|im_end|> included) 1, the whole user-2 message 0, turn 2 1
        assert mask == [1] * len(t1) + [0] * len(u2) + [1] * len(t2), f"sample {i}"
        text = tok.decode(u2)
        assert text.startswith("\n<|im_start|>user\n") and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
        cropped = i < 2
        header = protocol.CROP_HEADER if cropped else protocol.FALLBACK_HEADER
        assert text.startswith("\n<|im_start|>user\n" + header + "<|vision_start|>")
        # the image placeholder is expanded by the processor to the shown image's size: the crop, or the original
        assert u2.count(pad) == (crop_tokens if cropped else full_tokens)
        assert "So it is red" not in tok.decode(ids)  # text after the box block was cut
    # every image reaches the loss forward, and mm_token_type_ids marks image tokens over prompt AND completion
    assert out["num_images"] == [2, 2, 2, 2]
    seq = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    mm = out["mm_token_type_ids"]
    assert mm.shape == seq.shape
    assert torch.equal(mm == 1, seq == pad)
    features = int((out["image_grid_thw"].prod(-1) // 4).sum())
    assert int((seq == pad).sum()) == features


class RecordingBackend(ScriptedBackend):
    def __init__(self, responses, tokenizer):
        super().__init__(responses, tokenizer)
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return super().generate(requests)


def test_the_episode_gives_training_and_infer_the_same_tokens_response_and_verdict(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir)
    seen = script(trainer, TURN1, TURN2)
    rollouts = []
    log = trainer._log_rollout
    trainer._log_rollout = lambda episodes, *args: (rollouts.extend(episodes), log(episodes, *args))
    row = trainer.train_dataset[0]
    out = trainer._generate_and_score_completions([dict(row) for _ in range(4)])
    proc = trainer.processing_class
    responses = [{"turns": [TURN1[i], TURN2[i % 2]]} for i in range(4)]
    backend = RecordingBackend(responses, proc.tokenizer)
    samples = [Sample(row["image"], row["question"], list(row["choices"]), row["answer"]) for _ in range(4)]
    trajs = Engine(backend, trainer.protocol).run(samples)
    by_turn = {(r.sample_index, r.turn): r.messages for r in backend.requests}
    for i in range(4):
        for turn in (0, 1):
            infer_ids = render_inputs(proc, [by_turn[(i, turn)]])["input_ids"][0].tolist()
            assert seen[turn][i] == infer_ids, f"sample {i}, turn {turn + 1}: prompt tokens differ from infer's"
        # and the whole sequence: infer's turn-2 prompt + its output = training prompt + completion
        ids, _ = _segments(trainer, out, i)
        prompt = out["prompt_ids"][i][out["prompt_mask"][i].bool()].tolist()
        t2 = proc.tokenizer(TURN2[i % 2], add_special_tokens=False)["input_ids"] + [trainer.end_of_turn_id]
        assert prompt + ids == seen[1][i] + t2
        assert trajs[i].turns[0].fallback is None if i < 2 else trajs[i].turns[0].fallback is not None
    # the reward the trainer computed is infer's verdict on the same outputs, read from the same scored response
    assert [r.episode.response for r in rollouts] == [t.response for t in trajs] == [TURN2[i % 2] for i in range(4)]
    assert [r.episode.kept for r in rollouts] == [[TURN1[0], TURN2[0]], [BOX_TURN, TURN2[1]], [TURN1[2], TURN2[0]],
                                                  [TURN1[3], TURN2[1]]]  # fmt: skip
    assert [t.correct for t in trajs] == [True, False, True, False]
    assert (out["advantages"] > 0).tolist() == [t.correct for t in trajs]


def test_no_room_for_turn_two_never_cuts_inside_the_image_message(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir, max_completion_length=120)  # turn 1 fits, the turn-2 message does not
    seen = script(trainer, [BOX_TURN], TURN2)
    row = trainer.train_dataset[0]
    out = trainer._generate_and_score_completions([dict(row) for _ in range(4)])
    assert len(seen) == 2  # turn 2 is still sampled once (a collective call on multi-GPU), its output unused
    t1 = trainer._tokenizer(BOX_TURN, add_special_tokens=False)["input_ids"] + [trainer.end_of_turn_id]
    for i in range(4):
        ids, mask = _segments(trainer, out, i)
        assert ids == t1 and mask == [1] * len(t1)
    assert out["num_images"] == [1, 1, 1, 1]


def test_rows_sharing_id_and_question_keep_their_own_images(vqa_dir, make_trainer, monkeypatch):
    """The rollout cache shares one decode between a row's generations, never between two rows' images."""
    trainer = make_trainer(vqa_dir)
    script(trainer, [BOX_TURN] * 4, ["\\boxed{B}"] * 4)
    first, second = dict(trainer.train_dataset[0]), dict(trainer.train_dataset[1])
    second.update(id=first["id"], question=first["question"])  # same id and question, another photo
    seen = []
    real = type(trainer)._generate

    def spy(self, prompts):
        seen.extend(ep.episode.original.tobytes() for ep in self._batch)
        return real(self, prompts)

    monkeypatch.setattr(type(trainer), "_generate", spy)
    trainer._generate_and_score_completions([dict(first), dict(first), dict(second), dict(second)])
    want_first = open_image(first["image"]).tobytes()
    want_second = open_image(second["image"]).tobytes()
    assert want_first != want_second
    assert seen == [want_first, want_first, want_second, want_second]
