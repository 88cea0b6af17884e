"""The one option set: every protocol, image, backend and sampling option, defined once.

``mgpo infer``, ``mgpo eval`` and ``mgpo train`` add these options to their signatures with ``@with_options(...)``
(same flag, help and ``--help`` panel everywhere), and the lmms-eval model reads the same table to accept and convert
its ``--model_args`` (every value arrives there as text). An option's Python name is its model_args key; its flag is
the name with dashes.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from mgpo.errors import MgpoError

PROTOCOL_PANEL = "Protocol"
IMAGES_PANEL = "Images"
BACKEND_PANEL = "Backend"
SAMPLING_PANEL = "Sampling"


@dataclass(frozen=True)
class Option:
    """One option: its name (model_args key; --flag with dashes), value type, one-line help and --help panel.
    ``backends`` names the backends whose constructor takes it (backend options only)."""

    name: str
    type: type
    help: str
    panel: str
    backends: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def declarations(self) -> tuple[str, ...]:
        """Typer's parameter declarations: a bool option is a --name/--no-name pair, so either value can be given."""
        return (f"{self.flag}/--no-{self.flag[2:]}",) if self.type is bool else (self.flag,)

    def convert(self, value: Any) -> Any:
        """A value as given (model_args text or a Python value) in this option's type; a bad one is one line."""
        if value is None or isinstance(value, self.type):
            return value
        try:
            if self.type is bool:
                text = str(value).strip().lower()
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                return text in ("true", "1", "yes")
            return self.type(value)
        except (TypeError, ValueError):
            raise MgpoError(f"{self.name} must be {self.type.__name__}, got {value!r}") from None


# ProtocolConfig's fields (mgpo.protocol), one each.
PROTOCOL = (
    Option("max_turns", int, "Assistant turns (paper 2); more zooms iteratively.", PROTOCOL_PANEL),
    Option("parsing", str, "Box parsing: strict (paper) | lenient.", PROTOCOL_PANEL),
    Option(
        "coords",
        str,
        "Box coordinates: resized-pixels (Qwen2.5-VL, paper) | normalized-1000 (default: the model family's).",
        PROTOCOL_PANEL,
    ),
    Option("box_policy", str, "Out-of-image box: reject (paper) | clamp.", PROTOCOL_PANEL),
    Option("scoring", str, "paper (mathruler on the final turn) | letter (letter reader + fallbacks).", PROTOCOL_PANEL),
    Option("max_new_tokens", int, "Per-turn token cap (default: the model's, else 8192).", PROTOCOL_PANEL),
    Option("max_response_tokens", int, "Total token cap of the response (paper 12192; 0: none).", PROTOCOL_PANEL),
    Option(
        "model_family",
        str,
        "auto (from the model's config.json, else its name) | qwen2_vl | qwen2_5_vl | qwen3_vl | qwen3_5.",
        PROTOCOL_PANEL,
    ),
)
# The image pipeline: ProtocolConfig's pixel limits, resampling and image opening, plus the input-size guard.
IMAGES = (
    Option("min_pixels", int, "Full-image lower pixel limit (paper 200704).", IMAGES_PANEL),
    Option("max_pixels", int, "Full-image upper pixel limit (paper 1003520).", IMAGES_PANEL),
    Option("crop_min_pixels", int, "Crop lower pixel limit (paper 200704).", IMAGES_PANEL),
    Option("crop_max_pixels", int, "Crop upper pixel limit (paper 1003520).", IMAGES_PANEL),
    Option(
        "resampling", str, "Crop resize filter: nearest (paper) | bilinear | bicubic | lanczos | box.", IMAGES_PANEL
    ),
    Option(
        "image_mode",
        str,
        "reference (paper: no EXIF rotation, alpha dropped) | upright (EXIF, on white).",
        IMAGES_PANEL,
    ),
    Option("max_image_pixels", int, "Refuse larger input images (decompression-bomb guard).", IMAGES_PANEL),
)
# The backend constructors' options (mgpo/backends/*.py); make_backend passes each to the backends that take it.
BACKEND = (
    Option("device", str, "hf: auto | cpu | cuda | cuda:N.", BACKEND_PANEL, ("hf",)),
    Option("dtype", str, "hf, vllm: auto | float32 | bfloat16 | float16.", BACKEND_PANEL, ("hf", "vllm")),
    Option(
        "attn_implementation",
        str,
        "hf: attention kernel, e.g. sdpa | eager | flash_attention_2.",
        BACKEND_PANEL,
        ("hf",),
    ),
    Option(
        "vision_cache_mb", float, "hf: memory for cached image encodings, MB (default 1024).", BACKEND_PANEL, ("hf",)
    ),
    Option("base_url", str, "openai: server URL, e.g. http://HOST:8000/v1.", BACKEND_PANEL, ("openai",)),
    Option(
        "api_key_env", str, "openai: variable holding the API key (default OPENAI_API_KEY).", BACKEND_PANEL, ("openai",)
    ),
    Option(
        "concurrency",
        int,
        "openai, vllm with --async-engine: requests in flight (default 8; vllm 64).",
        BACKEND_PANEL,
        ("openai", "vllm"),
    ),
    Option("timeout", float, "openai: seconds per request (default 600).", BACKEND_PANEL, ("openai",)),
    Option("connect_timeout", float, "openai: seconds to connect (default 10).", BACKEND_PANEL, ("openai",)),
    Option("max_retries", int, "openai: retries of a failed request (default 4).", BACKEND_PANEL, ("openai",)),
    Option("backoff", float, "openai: first retry delay in seconds, doubling (default 1).", BACKEND_PANEL, ("openai",)),
    Option(
        "check", bool, "openai: check the server and model before the run (default true).", BACKEND_PANEL, ("openai",)
    ),
    Option(
        "async_engine",
        bool,
        "vllm: vLLM's AsyncLLMEngine, each sample's next turn sent as its last returns (default false).",
        BACKEND_PANEL,
        ("vllm",),
    ),
    Option("max_images", int, "vllm: images per prompt (default: max_turns).", BACKEND_PANEL, ("vllm",)),
    Option("tensor_parallel_size", int, "vllm: GPUs per model (default 1).", BACKEND_PANEL, ("vllm",)),
    Option("gpu_memory_utilization", float, "vllm: GPU memory share (default 0.9).", BACKEND_PANEL, ("vllm",)),
    Option("max_model_len", int, "vllm: context length (default: the model's).", BACKEND_PANEL, ("vllm",)),
    Option(
        "llm_options",
        str,
        "vllm: more vllm.LLM arguments as JSON, e.g. '{\"enforce_eager\": true}'.",
        BACKEND_PANEL,
        ("vllm",),
    ),
)
SAMPLING = (
    Option("sampling", str, "greedy (default) | paper (reference validation: T=1, top_p=1).", SAMPLING_PANEL),
    Option("temperature", float, "0 = greedy; >0 samples (seeded per sample).", SAMPLING_PANEL),
    Option("top_p", float, "Nucleus sampling mass (with --temperature > 0).", SAMPLING_PANEL),
    Option("seed", int, "Base seed; each sample's seed derives from it (default 0).", SAMPLING_PANEL),
)
ALL = {o.name: o for o in (*PROTOCOL, *IMAGES, *BACKEND, *SAMPLING)}
PROTOCOL_NAMES = frozenset(o.name for o in (*PROTOCOL, *IMAGES) if o.name != "max_image_pixels")


def backend_options(backend: str, values: dict[str, Any]) -> dict[str, Any]:
    """The given (not None) backend options that ``backend``'s constructor takes, converted to their types."""
    return {
        o.name: o.convert(values[o.name]) for o in BACKEND if backend in o.backends and values.get(o.name) is not None
    }


def foreign_options(backend: str, values: dict[str, Any]) -> list[str]:
    """The given backend options that ``backend`` does not take (another backend's), for a one-line refusal."""
    return sorted(o.name for o in BACKEND if backend not in o.backends and values.get(o.name) is not None)


def split_options(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Known options converted to their types, and the rest (unknown names) as given."""
    known = {k: ALL[k].convert(v) for k, v in values.items() if k in ALL}
    return known, {k: v for k, v in values.items() if k not in ALL}


def with_options(*groups: tuple[Option, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of ``groups`` to a Typer command: they appear in its signature (so in --help, under their
    panel) and arrive in the command as one dict ``options`` (name -> value, None when not given)."""
    specs = [o for group in groups for o in group]

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        import typer

        signature = inspect.signature(func, eval_str=True)  # real annotations, as Typer needs
        own = [p for p in signature.parameters.values() if p.name != "options"]
        added = [
            inspect.Parameter(
                o.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    o.type | None, typer.Option(*o.declarations, help=o.help, rich_help_panel=o.panel)
                ],
            )
            for o in specs
        ]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            options = {o.name: kwargs.pop(o.name, None) for o in specs}
            return func(*args, options=options, **kwargs)

        command.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return command

    return wrap


def options_dict(value: dict[str, Any] | str | None, name: str) -> dict[str, Any]:
    """A dict option that may arrive as JSON text (lmms-eval ``--model_args``, CLI strings)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise MgpoError(f"{name} must be a JSON object, e.g. {name}='{{\"temperature\": 0.7}}'") from None
    if not isinstance(value, dict):
        raise MgpoError(f"{name} must be a JSON object, got {type(value).__name__}")
    return dict(value)
