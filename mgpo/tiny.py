"""A randomly initialised Qwen2.5-VL of a few MB, built offline: real architecture, real processor, Qwen's chat
template, and a byte-level tokenizer made locally. For tests, benchmarks and the demo; it answers nonsense."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
]  # fmt: skip
TINY_MAX_NEW_TOKENS = 48  # a random model rarely stops by itself; the checkpoint declares a short cap


def chat_template() -> str:
    """Qwen2.5-VL's chat template, shipped with mgpo."""
    return (importlib.resources.files("mgpo") / "assets" / "qwen2_5_vl_chat_template.jinja").read_text()


def build_tokenizer():
    """A byte-level BPE tokenizer with Qwen's pre-tokenizer and special tokens, and no merges: every byte a token."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.padding_side = "left"
    return tokenizer


def build_processor(min_pixels: int = 3136, max_pixels: int = 12_845_056):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = build_tokenizer()
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=chat_template(),
    )


def build_tiny_model(out_dir: str | Path, seed: int = 0, hidden_size: int = 32) -> Path:
    """Write a tiny random Qwen2.5-VL (model, processor, generation config) to out_dir; return the path."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor()
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = 4
    # mrope_section must sum to head_dim / 2; [1, 1, 2] gives all three M-RoPE axes (t, h, w) a share
    half = hidden_size // heads // 2
    mrope = [max(1, half // 4), max(1, half // 4), half - 2 * max(1, half // 4)]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "mrope_section": mrope, "rope_theta": 1_000_000.0},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_heads": heads,
            "out_hidden_size": hidden_size,
            "fullatt_block_indexes": [1],
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        max_new_tokens=TINY_MAX_NEW_TOKENS,
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
