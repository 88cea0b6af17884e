"""Backends: what actually runs the model. ``make_backend`` builds one by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgpo.backends.base import Backend, BackendError, Generation, Request
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig

BACKENDS = ("hf", "openai", "vllm", "scripted")

__all__ = ["BACKENDS", "Backend", "BackendError", "Generation", "Request", "make_backend"]


def make_backend(
    name: str,
    model: str | None = None,
    *,
    protocol: ProtocolConfig | None = None,
    responses: str | Path | list[dict] | None = None,
    **options: Any,
) -> Backend:
    """Build a backend by name; options go to its constructor.

    hf: device, dtype, attn_implementation, batch_size, sampling. openai: base_url, api_key_env, concurrency,
    timeout, connect_timeout, max_retries, backoff, max_new_tokens, sampling, check. vllm: see VLLMBackend.
    Option values may be strings (lmms-eval ``--model_args``); each backend converts them.
    """
    cfg = protocol or ProtocolConfig.paper()
    if name == "scripted":
        from mgpo.backends.scripted import ScriptedBackend

        if responses is None:
            raise MgpoError("the scripted backend needs a responses file: add --responses FILE.jsonl")
        tokenizer = None
        if model and Path(model).is_dir():
            from mgpo.backends.hf import load_processor

            tokenizer = load_processor(model, cfg.processor_min_pixels, cfg.processor_max_pixels).tokenizer
        return ScriptedBackend(responses, tokenizer=tokenizer)
    if name == "hf":
        from mgpo.backends.hf import HFBackend

        if not model:
            raise MgpoError("the hf backend needs a model: add --model ID_OR_DIR")
        return HFBackend(
            model,
            processor_min_pixels=cfg.processor_min_pixels,
            processor_max_pixels=cfg.processor_max_pixels,
            **options,
        )
    if name == "openai":
        from mgpo.backends.openai import OpenAIBackend

        return OpenAIBackend(
            model,
            processor_min_pixels=cfg.processor_min_pixels,
            processor_max_pixels=cfg.processor_max_pixels,
            **options,
        )
    if name == "vllm":
        from mgpo.backends.vllm import VLLMBackend

        if not model:
            raise MgpoError("the vllm backend needs a model: add --model ID_OR_DIR")
        options.setdefault("max_images", cfg.max_turns)  # one image per turn
        return VLLMBackend(
            model,
            processor_min_pixels=cfg.processor_min_pixels,
            processor_max_pixels=cfg.processor_max_pixels,
            **options,
        )
    raise MgpoError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}")
