"""Cutting a sampled turn after its box block keeps the sampled tokens; only a token that straddles the cut is
re-encoded. Checked with a BPE tokenizer whose merges make the closing fence and its newline ONE token."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mgpo.grounding import parse_box
from mgpo.train.rollout import cut_tokens


@pytest.fixture(scope="module")
def bpe():
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges = [("`", "`"), ("``", "`"), ("```", "Ċ"), ("Ġ", "1")]  # "```\n" and " 1" become single tokens
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|im_end|>"] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|im_end|>")  # fmt: skip
    assert len(tok("```\n", add_special_tokens=False)["input_ids"]) == 1  # the straddling token exists
    return tok


BLOCK = '```json\n[{"bbox_2d": [10, 20, 130, 140], "label": "x"}]\n```'


@settings(max_examples=30, deadline=None)
@example(before="Look. ", after="\nSo \\boxed{A}")
@example(before="", after="")
@given(before=st.text(alphabet="ab \n.", max_size=20), after=st.text(alphabet="ab 1\n`.", max_size=20))
def test_cut_keeps_sampled_tokens_and_spells_the_kept_text(bpe, before, after):
    text = before + BLOCK + after
    ids = bpe(text, add_special_tokens=False)["input_ids"]
    parsed = parse_box(text)
    assert parsed is not None
    kept_text = text[: parsed.end]
    logprobs = [-0.5] * len(ids)
    kept, lps = cut_tokens(ids, logprobs, kept_text, bpe)
    assert bpe.decode(kept) == kept_text
    n_sampled = sum(lp is not None for lp in lps)
    assert kept[:n_sampled] == ids[:n_sampled]  # a prefix of the sampled tokens, untouched
    assert all(lp is None for lp in lps[n_sampled:])  # only re-encoded tokens lack a sampling logprob
    if after.startswith("\n"):  # the closing fence was sampled as one "```\n" token: only it is re-encoded
        assert len(kept) - n_sampled == 1 and bpe.decode(kept[n_sampled:]) == "```"
    elif after == "" or not after.startswith("`"):
        assert n_sampled == len(kept)  # the cut falls on a token boundary: nothing re-encoded
