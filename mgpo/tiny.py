"""A randomly initialised Qwen-VL of a few MB, built offline: real architecture, real processor, the family's chat
template, and a byte-level tokenizer made locally. For tests, benchmarks and the demo; it answers nonsense.

One per model family (mgpo.families): ``qwen2_5_vl`` (the default), ``qwen2_vl``, ``qwen3_vl`` and ``qwen3_5``, each
with its real model class, processor class and image-processor settings (Qwen3-VL / Qwen3.5: 16-px patches merged
2x2, mean/std 0.5, size={shortest_edge, longest_edge}, as their released checkpoints declare)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
]  # fmt: skip
THINK_TOKENS = ["<think>", "</think>"]  # Qwen3.5: ordinary (non-special) added tokens, as in its vocabulary
TINY_MAX_NEW_TOKENS = 48  # a random model rarely stops by itself; the checkpoint declares a short cap


def chat_template(family: str = "qwen2_5_vl") -> str:
    """The family's chat template, shipped with mgpo (Qwen2.5-VL's by default)."""
    from mgpo.families import get_family

    name = get_family(family).chat_template
    return (importlib.resources.files("mgpo") / "assets" / name).read_text()


def build_tokenizer(family: str = "qwen2_5_vl"):
    """A byte-level BPE tokenizer with Qwen's pre-tokenizer and special tokens, and no merges: every byte a token.
    Qwen3.5's has its own tokenizer class (pre-tokenizer) and the <think> / </think> tokens its template writes."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for tok in SPECIAL_TOKENS:
        vocab[tok] = len(vocab)
    if family == "qwen3_5":
        from tokenizers import AddedToken
        from transformers import Qwen3_5Tokenizer

        for tok in THINK_TOKENS:
            vocab[tok] = len(vocab)
        tokenizer = Qwen3_5Tokenizer(
            vocab=vocab,
            merges=[],
            unk_token=None,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            additional_special_tokens=SPECIAL_TOKENS[1:],
        )
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
        tokenizer.padding_side = "left"
        return tokenizer
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


def build_processor(min_pixels: int = 3136, max_pixels: int = 12_845_056, family: str = "qwen2_5_vl"):
    """The family's real processor class around the local tokenizer; Qwen2/2.5-VL take ``min_pixels`` /
    ``max_pixels`` (their checkpoints' defaults), Qwen3-VL / Qwen3.5 their released 65536..16777216 size."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    family = _family_name(family)
    tokenizer = build_tokenizer(family)
    template = chat_template(family)
    if family in ("qwen2_vl", "qwen2_5_vl"):
        from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

        cls = Qwen2_5_VLProcessor if family == "qwen2_5_vl" else Qwen2VLProcessor
        return cls(
            image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
            video_processor=Qwen2VLVideoProcessor(),
            tokenizer=tokenizer,
            chat_template=template,
        )
    from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(
        size=dict(QWEN3_SIZE), patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )  # fmt: skip
    return Qwen3VLProcessor(
        image_processor=image_processor,
        video_processor=Qwen3VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=template,
    )


QWEN3_SIZE = {"shortest_edge": 65_536, "longest_edge": 16_777_216}  # Qwen3-VL / Qwen3.5 preprocessor_config.json


def _family_name(family: str) -> str:
    from mgpo.families import get_family

    return get_family(family).name


def build_tiny_model(out_dir: str | Path, seed: int = 0, hidden_size: int = 32, family: str = "qwen2_5_vl") -> Path:
    """Write a tiny random model of ``family`` (model, processor, generation config) to out_dir; return the path."""
    import torch
    from transformers import GenerationConfig

    family = _family_name(family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(family=family)
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = _CONFIGS[family](len(tok), ids, hidden_size)
    torch.manual_seed(seed)
    model = _model_class(family)(config).to(torch.float32)
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


def _model_class(family: str):
    import transformers

    return getattr(transformers, {
        "qwen2_vl": "Qwen2VLForConditionalGeneration",
        "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
        "qwen3_vl": "Qwen3VLForConditionalGeneration",
        "qwen3_5": "Qwen3_5ForConditionalGeneration",
    }[family])  # fmt: skip


def _token_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _text_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _mrope(half: int) -> list[int]:
    """An M-RoPE section over ``half`` rotary pairs that gives all three axes (t, h, w) a share."""
    side = max(1, half // 4)
    return [side, side, half - 2 * side]


def _qwen2_5_vl_config(vocab: int, ids: dict[str, int], hidden_size: int):
    from transformers import Qwen2_5_VLConfig

    heads = 4
    # mrope_section must sum to head_dim / 2; [1, 1, 2] gives all three M-RoPE axes (t, h, w) a share
    half = hidden_size // heads // 2
    mrope = [max(1, half // 4), max(1, half // 4), half - 2 * max(1, half // 4)]
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab,
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


def _qwen2_vl_config(vocab: int, ids: dict[str, int], hidden_size: int):
    from transformers import Qwen2VLConfig

    heads = 4
    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab, "hidden_size": hidden_size, "intermediate_size": hidden_size * 2,
            "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "tie_word_embeddings": False, **_text_ids(ids),
            "rope_parameters": {"rope_type": "default", "mrope_section": _mrope(hidden_size // heads // 2),
                                "rope_theta": 1_000_000.0},
        },
        vision_config={
            "depth": 2, "embed_dim": hidden_size, "hidden_size": hidden_size, "mlp_ratio": 2, "num_heads": heads,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        **_token_ids(ids),
    )  # fmt: skip


def _qwen3_vl_config(vocab: int, ids: dict[str, int], hidden_size: int):
    from transformers import Qwen3VLConfig

    heads, head_dim = 4, 8
    return Qwen3VLConfig(
        text_config={
            "vocab_size": vocab, "hidden_size": hidden_size, "intermediate_size": hidden_size * 2,
            "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": 2, "head_dim": head_dim,
            "max_position_embeddings": 32768, **_text_ids(ids),
            "rope_parameters": {"rope_type": "default", "mrope_section": _mrope(head_dim // 2),
                                "mrope_interleaved": True, "rope_theta": 5_000_000.0},
        },
        vision_config={
            "depth": 2, "hidden_size": hidden_size, "intermediate_size": hidden_size * 2, "num_heads": heads,
            "out_hidden_size": hidden_size, "num_position_embeddings": 64, "deepstack_visual_indexes": [0],
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        tie_word_embeddings=False,
        **_token_ids(ids),
    )  # fmt: skip


def _qwen3_5_config(vocab: int, ids: dict[str, int], hidden_size: int):
    from transformers import Qwen3_5Config

    heads, head_dim = 4, 32  # Qwen3.5 rotates a quarter of each head (partial_rotary_factor 0.25): 8 of 32 dims
    return Qwen3_5Config(
        text_config={
            "vocab_size": vocab, "hidden_size": hidden_size, "intermediate_size": hidden_size * 2,
            "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": 2, "head_dim": head_dim,
            "max_position_embeddings": 32768, **_text_ids(ids),
            "layer_types": ["linear_attention", "full_attention"],  # one of each: Gated DeltaNet and attention
            "linear_key_head_dim": 8, "linear_value_head_dim": 8, "linear_num_key_heads": 2,
            "linear_num_value_heads": 4,
            "rope_parameters": {"rope_type": "default", "mrope_section": _mrope(head_dim // 4 // 2),
                                "mrope_interleaved": True, "rope_theta": 10_000_000.0,
                                "partial_rotary_factor": 0.25},
        },
        vision_config={
            "depth": 2, "hidden_size": hidden_size, "intermediate_size": hidden_size * 2, "num_heads": heads,
            "out_hidden_size": hidden_size, "num_position_embeddings": 64, "patch_size": 16,
            "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        tie_word_embeddings=False,
        **_token_ids(ids),
    )  # fmt: skip


_CONFIGS = {
    "qwen2_vl": _qwen2_vl_config,
    "qwen2_5_vl": _qwen2_5_vl_config,
    "qwen3_vl": _qwen3_vl_config,
    "qwen3_5": _qwen3_5_config,
}
