"""The reference's caps at the token level (spec §4), on the tiny model: a turn that hit its per-turn cap has its last
token replaced by <|im_end|> (mask 1); a turn 2 cut by the total cap gets mask 0 on all its tokens and reward 0."""

from __future__ import annotations

from train_helpers import BOX_TURN


def _current_cap(trainer) -> int:
    kwargs = getattr(trainer, "generation_kwargs", None) or {}
    return kwargs.get("max_new_tokens") or trainer.generation_config.max_new_tokens


def script_raw(trainer, turn1: list[tuple[str, bool]], turn2: list[tuple[str, bool]]):
    """Scripted sampling that honours the current cap: (text, ends) -> tokens, <|im_end|> only when ``ends``."""
    tok = trainer._tokenizer

    def fake(prompt_ids, images, fields, num_generations, has_tool_images=False):
        script = turn2 if has_tool_images else turn1
        cap = _current_cap(trainer)
        out = []
        for i in range(len(prompt_ids)):
            text, ends = script[i % len(script)]
            ids = tok(text, add_special_tokens=False)["input_ids"] + ([trainer.end_of_turn_id] if ends else [])
            out.append(ids[:cap])
        return out, None

    trainer._generate_single_turn = fake


def _segments(out, i):
    n = int(out["completion_mask"][i].sum())
    return out["completion_ids"][i][:n].tolist(), out["tool_mask"][i][:n].tolist()


def test_turn_1_at_its_cap_has_its_last_token_replaced_by_im_end(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir)  # per-turn cap 40 tokens
    tok = trainer._tokenizer
    rambling = "I am looking all over the image for the square " * 10
    script_raw(trainer, [(rambling, False)], [("\\boxed{B}", True)])
    out = trainer._generate_and_score_completions([dict(trainer.train_dataset[0]) for _ in range(4)])
    sampled = tok(rambling, add_special_tokens=False)["input_ids"][:40]
    for i in range(4):
        ids, mask = _segments(out, i)
        assert ids[:40] == [*sampled[:39], trainer.end_of_turn_id]  # replaced, not appended
        assert mask[:40] == [1] * 40


def test_turn_2_cut_by_the_total_cap_gets_mask_0_and_reward_0(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir)
    tok = trainer._tokenizer
    long_answer = "\\boxed{B} " + "because the square is clearly blue " * 20
    script_raw(trainer, [(BOX_TURN, True)], [("\\boxed{B}", True)])
    probe = trainer._generate_and_score_completions([dict(trainer.train_dataset[0]) for _ in range(4)])
    ids, _ = _segments(probe, 0)
    t2_short = tok("\\boxed{B}", add_special_tokens=False)["input_ids"] + [trainer.end_of_turn_id]
    head = len(ids) - len(t2_short)  # turn 1 + the turn-2 message
    trainer.max_completion_length = head + 20  # room for the short answer, not for the long one
    script_raw(trainer, [(BOX_TURN, True)], [("\\boxed{B}", True), (long_answer, True)])
    out = trainer._generate_and_score_completions([dict(trainer.train_dataset[0]) for _ in range(4)])
    for i in range(4):
        ids, mask = _segments(out, i)
        if i % 2 == 0:  # fits: turn 2 trained on and rewarded
            assert ids[head:] == t2_short and mask[head:] == [1] * len(t2_short)
        else:  # cut at the total cap, though its \boxed{B} is inside the kept part
            assert len(ids) == head + 20 and mask[head:] == [0] * 20
            assert "\\boxed{B}" in tok.decode(ids[head:])
    assert (out["advantages"] > 0).tolist() == [True, False, True, False]  # rewards 1, 0, 1, 0


def test_turn_2_at_its_per_turn_cap_within_the_total_ends_with_im_end(vqa_dir, make_trainer):
    trainer = make_trainer(vqa_dir)  # per-turn cap 40, total 1200: the per-turn cap binds
    tok = trainer._tokenizer
    long_answer = "\\boxed{B} " + "because the square is clearly blue " * 20
    script_raw(trainer, [(BOX_TURN, True)], [(long_answer, True)])
    out = trainer._generate_and_score_completions([dict(trainer.train_dataset[0]) for _ in range(4)])
    sampled = tok(long_answer, add_special_tokens=False)["input_ids"][:40]
    ids, mask = _segments(out, 0)
    assert ids[-40:] == [*sampled[:39], trainer.end_of_turn_id] and mask[-40:] == [1] * 40
