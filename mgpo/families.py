"""Model families: what of the protocol depends on the model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5).

The MGPO prompts and box rules are the same for every family; three things are not:

* the frame: the processor rounds every image to multiples of ``patch_size * merge_size`` (28 px for Qwen2/2.5-VL,
  32 px for Qwen3-VL / Qwen3.5) and spends one visual token per ``unit x unit`` cell;
* the coordinate convention of the boxes the model writes: pixels of that frame (Qwen2.5-VL) or relative 0-1000
  (Qwen2-VL, Qwen3-VL, Qwen3.5);
* the processor's pixel-limit keys and the chat template.

A family is resolved from the checkpoint's ``config.json`` ``model_type`` (a local directory, or a Hub id already in
the local cache; never fetched), else from the model's name, and can be forced with ``--model-family``. The frame
unit is read from the checkpoint's processor config where there is one; the table's unit (the released
checkpoints') is only the fallback for a model mgpo cannot see (a remote server, recorded outputs).
"""

from __future__ import annotations

import importlib.resources
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgpo.errors import MgpoError

if TYPE_CHECKING:
    from mgpo.protocol import ProtocolConfig

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
AUTO = "auto"


@dataclass(frozen=True)
class ModelFamily:
    """The model-specific part of the protocol for one family of checkpoints."""

    name: str  # --model-family value
    label: str  # for people
    model_types: tuple[str, ...]  # config.json model_type values of this family
    patch_size: int  # the released checkpoints' processor values: the fallback when no processor can be read
    merge_size: int
    coords: str  # the convention of the boxes the model writes (grounding.to_frame_pixels)
    pixel_keys: str  # how its processor takes pixel limits: "min_max" (min_pixels/max_pixels) or "size"
    chat_template: str  # file in mgpo/assets: the family's own template, used when a checkpoint ships none
    vision_tokens: tuple[str, ...] = VISION_TOKENS  # special tokens a model must never sample
    name_pattern: str = ""  # a regex on a model name / Hub id, when no config can be read

    @property
    def frame_unit(self) -> int:
        """The side, in pixels, that frames are multiples of and that one visual token covers."""
        return self.patch_size * self.merge_size

    def processor_kwargs(self, min_pixels: int, max_pixels: int) -> dict[str, Any]:
        """The pixel limits in the keys this family's processor reads (vLLM's ``mm_processor_kwargs``)."""
        return pixel_kwargs(self.pixel_keys, min_pixels, max_pixels)

    def template(self) -> str:
        """The family's chat template, as shipped by its released checkpoints (copied into mgpo/assets)."""
        return (importlib.resources.files("mgpo") / "assets" / self.chat_template).read_text()

    def describe(self, unit: int | None = None) -> dict[str, Any]:
        """What the trajectory records about the family."""
        return {"name": self.name, "frame_unit": unit or self.frame_unit, "coords": self.coords}


def pixel_kwargs(pixel_keys: str, min_pixels: int, max_pixels: int) -> dict[str, Any]:
    """Processor pixel limits as ``pixel_keys`` says: 'size' ({shortest_edge, longest_edge}, what Qwen3-VL and
    Qwen3.5 checkpoints declare; min_pixels/max_pixels are deprecated there) or 'min_max'."""
    if pixel_keys == "size":
        return {"size": {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}}
    return {"min_pixels": int(min_pixels), "max_pixels": int(max_pixels)}


FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ModelFamily("qwen2_vl", "Qwen2-VL", ("qwen2_vl",), 14, 2, "normalized-1000", "min_max",
                    "qwen2_5_vl_chat_template.jinja", name_pattern=r"qwen2-vl"),
        ModelFamily("qwen2_5_vl", "Qwen2.5-VL", ("qwen2_5_vl",), 14, 2, "resized-pixels", "min_max",
                    "qwen2_5_vl_chat_template.jinja", name_pattern=r"qwen2\.5-vl"),
        ModelFamily("qwen3_vl", "Qwen3-VL", ("qwen3_vl", "qwen3_vl_moe"), 16, 2, "normalized-1000", "size",
                    "qwen3_vl_chat_template.jinja", name_pattern=r"qwen3-vl"),
        ModelFamily("qwen3_5", "Qwen3.5", ("qwen3_5", "qwen3_5_moe"), 16, 2, "normalized-1000", "size",
                    "qwen3_5_chat_template.jinja", name_pattern=r"qwen3\.5"),
    )
}  # fmt: skip
DEFAULT_FAMILY = "qwen2_5_vl"  # what mgpo assumed before families existed, and the paper's model
NAMES = tuple(FAMILIES)
_BY_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}


def get_family(name: str | None) -> ModelFamily:
    """The family called ``name`` (None: the default, Qwen2.5-VL); an unknown name is one line naming the choices."""
    key = (name or DEFAULT_FAMILY).strip().lower().replace("-", "_").replace(".", "_")
    if key in FAMILIES:
        return FAMILIES[key]
    if key in _BY_TYPE:  # a model_type is accepted too: --model-family qwen3_vl_moe
        return _BY_TYPE[key]
    raise MgpoError(f"unknown model family {name!r}; use one of: {AUTO}, {', '.join(NAMES)}")


def family_of_type(model_type: str | None) -> ModelFamily | None:
    """The family of a config.json ``model_type``, None for a model mgpo has no family for."""
    return _BY_TYPE.get(model_type or "")


def family_of_name(model: str | None) -> ModelFamily | None:
    """The family a model name or Hub id spells (``Qwen/Qwen3-VL-8B-Instruct``), None when it spells none."""
    text = (model or "").lower()
    for family in FAMILIES.values():
        if re.search(family.name_pattern, text):
            return family
    return None


# ---------------------------------------------------------------------------------------------------------------
# Reading a checkpoint's configs (no network: a local directory or the local Hub cache)


def _config_file(model: str, filename: str) -> Path | None:
    path = Path(model).expanduser()
    if path.is_dir():
        found = path / filename
        return found if found.is_file() else None
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, filename)
    except Exception:  # not a valid repo id, no cache: nothing to read
        return None
    return Path(cached) if isinstance(cached, str) else None


def _read_json(model: str, filename: str) -> dict[str, Any]:
    path = _config_file(model, filename)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def model_type(model: str | None) -> str | None:
    """config.json's ``model_type`` of a local checkpoint or a cached Hub id; None when it cannot be read."""
    if not model:
        return None
    value = _read_json(model, "config.json").get("model_type")
    return value if isinstance(value, str) else None


def processor_unit(model: str | None) -> int | None:
    """``patch_size * merge_size`` from the checkpoint's image-processor config, None when there is none."""
    if not model:
        return None
    for filename in ("preprocessor_config.json", "processor_config.json"):
        data = _read_json(model, filename)
        data = data.get("image_processor", data) if isinstance(data.get("image_processor"), dict) else data
        patch, merge = data.get("patch_size"), data.get("merge_size")
        if isinstance(patch, int) and isinstance(merge, int) and patch > 0 and merge > 0:
            return patch * merge
    return None


def unit_of(image_processor: Any) -> int | None:
    """The frame unit of a loaded image processor (its patch and merge sizes)."""
    patch, merge = getattr(image_processor, "patch_size", None), getattr(image_processor, "merge_size", None)
    if isinstance(patch, int) and isinstance(merge, int) and patch > 0 and merge > 0:
        return patch * merge
    return None


def resolve(model: str | None, requested: str | None = None) -> tuple[ModelFamily, int]:
    """The family and frame unit for ``model``: ``requested`` (``--model-family``) unless it is None or 'auto',
    else config.json's model_type, else the model's name, else Qwen2.5-VL. The unit is the processor's where the
    checkpoint has a processor config, else the family's."""
    if requested and requested.strip().lower() != AUTO:
        family = get_family(requested)
    else:
        family = family_of_type(model_type(model)) or family_of_name(model) or get_family(DEFAULT_FAMILY)
    return family, processor_unit(model) or family.frame_unit


def apply(cfg: ProtocolConfig, family: ModelFamily, unit: int | None = None) -> ProtocolConfig:
    """``cfg`` for this family: its frame unit, and its coordinate convention unless ``--coords`` chose one."""
    coords = cfg.coords or family.coords
    return replace(cfg, model_family=family.name, frame_unit=unit or family.frame_unit, coords=coords)


def for_model(cfg: ProtocolConfig, model: str | None) -> ProtocolConfig:
    """``cfg`` resolved for ``model``, its ``model_family`` field ('auto' or None: from the model) as the request."""
    family, unit = resolve(model, cfg.model_family)
    return apply(cfg, family, unit)


def for_backend(requested: ProtocolConfig, resolved: ProtocolConfig, backend: Any) -> ProtocolConfig:
    """``resolved`` (``for_model(requested, ...)``) corrected by what a loaded backend knows better than the files:
    the unit of the processor it really loaded and, unless the family was forced, the model it really serves (a
    server's model name, the model_type transformers loaded)."""
    cfg = resolved
    if requested.model_family in (None, AUTO):
        found = family_of_type(getattr(backend, "model_type", None))
        served = getattr(backend, "model", None)  # the openai backend's model name (hf's is the module)
        if found is None and isinstance(served, str):
            found = family_of_name(served)
        if found is not None and found.name != cfg.model_family:
            cfg = apply(requested, found)
    return with_processor(cfg, getattr(backend, "processor", None))


def with_processor(cfg: ProtocolConfig, processor: Any) -> ProtocolConfig:
    """``cfg`` with the frame unit of the processor that will really see the images, where there is one."""
    unit = unit_of(getattr(processor, "image_processor", None)) if processor is not None else None
    return replace(cfg, frame_unit=unit) if unit and unit != cfg.frame_unit else cfg


def settle(cfg: ProtocolConfig) -> ProtocolConfig:
    """``cfg`` with nothing left to resolve: an unresolved family (None, 'auto') is the default, Qwen2.5-VL. What
    an Engine or trainer given a bare ProtocolConfig runs, so the trajectory records the frame and convention."""
    if cfg.model_family not in (None, AUTO) and cfg.coords and cfg.frame_unit:
        return cfg
    return apply(cfg, cfg.family, cfg.frame_unit)
