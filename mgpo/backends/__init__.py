"""Backends: what actually runs the model. ``make_backend`` builds one by name from ``REGISTRY``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgpo.backends.base import Backend, BackendError, Generation, Request
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig


@dataclass(frozen=True)
class BackendEntry:
    """How to build one backend: its class (imported only when chosen, so hf's torch stays unloaded for openai)."""

    class_path: str  # "module:Class"
    needs_model: bool = True  # refuse a missing --model with one line before anything loads
    # extra constructor options derived from the protocol (e.g. vllm's images per prompt)
    protocol_options: Callable[[ProtocolConfig], dict[str, Any]] | None = None

    def load(self) -> type:
        module, name = self.class_path.split(":")
        return getattr(importlib.import_module(module), name)


REGISTRY: dict[str, BackendEntry] = {
    "hf": BackendEntry("mgpo.backends.hf:HFBackend"),
    # the backends that resize images to the model frame get the family's frame unit
    "openai": BackendEntry(
        "mgpo.backends.openai:OpenAIBackend", needs_model=False, protocol_options=lambda cfg: {"frame_unit": cfg.unit}
    ),
    "vllm": BackendEntry(
        "mgpo.backends.vllm:VLLMBackend",
        protocol_options=lambda cfg: {
            "max_images": cfg.max_turns,
            "frame_unit": cfg.unit,
            "pixel_keys": cfg.family.pixel_keys,
        },
    ),
    "scripted": BackendEntry("mgpo.backends.scripted:ScriptedBackend", needs_model=False),
}
BACKENDS = tuple(REGISTRY)

__all__ = ["BACKENDS", "REGISTRY", "Backend", "BackendEntry", "BackendError", "Generation", "Request", "make_backend"]


def make_backend(
    name: str,
    model: str | None = None,
    *,
    protocol: ProtocolConfig | None = None,
    responses: str | Path | list[dict] | None = None,
    **options: Any,
) -> Backend:
    """Build a backend by name; options go to its constructor (mgpo/options.py lists them per backend).

    Option values may be strings (lmms-eval ``--model_args``); each backend converts them.
    """
    entry = REGISTRY.get(name)
    if entry is None:
        raise MgpoError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)}")
    cfg = protocol or ProtocolConfig.paper()
    if name == "scripted":
        return _scripted(entry, model, cfg, responses)
    if entry.needs_model and not model:
        raise MgpoError(f"the {name} backend needs a model: add --model ID_OR_DIR")
    if entry.protocol_options:
        options = {**entry.protocol_options(cfg), **options}
    return entry.load()(
        model,
        processor_min_pixels=cfg.processor_min_pixels,
        processor_max_pixels=cfg.processor_max_pixels,
        **options,
    )


def _scripted(entry: BackendEntry, model: str | None, cfg: ProtocolConfig, responses: Any) -> Backend:
    """Recorded turns; a local model directory only lends its tokenizer, for token counts."""
    if responses is None:
        raise MgpoError("the scripted backend needs a responses file: add --responses FILE.jsonl")
    tokenizer = None
    if model and Path(model).is_dir():
        from mgpo.backends.hf import load_processor

        tokenizer = load_processor(model, cfg.processor_min_pixels, cfg.processor_max_pixels).tokenizer
    return entry.load()(responses, tokenizer=tokenizer)
