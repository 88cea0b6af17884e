"""transformers backend: Qwen2.5-VL (or any model whose processor follows the same chat/image contract).

Batched, left-padded ``generate``; greedy unless sampling is asked for; vision special tokens suppressed so a sampled
placeholder can never desynchronise image features; ``mm_token_type_ids`` from the processor passed through so
M-RoPE gets real 3-D positions.

Speed: each call's requests run as one batch (the engine sizes it: ``batch_size`` samples in flight); the vision
encoder's output for an image is cached by image object, so turn 2 (which shows turn 1's full image again, next to
the crop) encodes only the new image; SDPA attention (flash-attention 2 on CUDA when installed); the model stays on
its device.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mgpo.backends.base import DEFAULT_MAX_NEW_TOKENS, Generation, Request
from mgpo.errors import INTERNAL_HINT, ModelLoadError, debug_traceback, is_bug
from mgpo.families import VISION_TOKENS  # the same five for every Qwen family
from mgpo.sampling import Sampling, per_row_sampler


def vision_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the vision special tokens a model must never sample (a sampled one desynchronises image features)."""
    ids = set()
    for tok in VISION_TOKENS:
        i = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id:
            ids.add(i)
    return sorted(ids)


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        check_device(device)
        return device
    if not torch.cuda.is_available():
        return "cpu"
    local = os.environ.get("LOCAL_RANK")  # one process per GPU (accelerate launch / torchrun): this rank's own
    return f"cuda:{int(local) % torch.cuda.device_count()}" if local and local.isdigit() else "cuda"


def check_device(device: str) -> None:
    """A CUDA device that this machine lacks is one line naming the way out, before any model loads."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: no CUDA GPU is visible to torch here; use --device cpu or auto")
    index = device.partition(":")[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        raise ModelLoadError(
            f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0..); pick one of them"
        )


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]  # fmt: skip
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def load_processor(model_id: str, min_pixels: int, max_pixels: int):
    """The model's processor, left-padded, with its image limits set to the protocol's rounding limits."""
    from transformers import AutoProcessor

    _check_local(model_id)
    try:
        processor = AutoProcessor.from_pretrained(model_id, padding_side="left")
    except Exception as exc:
        raise ModelLoadError(_load_message(model_id, exc)) from exc
    if not hasattr(processor, "image_processor"):
        raise ModelLoadError(f"{model_id}: its processor takes no images; give a vision-language model")
    processor.tokenizer.padding_side = "left"
    if not getattr(processor, "chat_template", None):  # a checkpoint without one: its family's, as released
        from mgpo import families

        family = families.family_of_type(families.model_type(model_id))
        if family is not None:
            processor.chat_template = family.template()
    ip = processor.image_processor
    ip.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    for attr, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(ip, attr):
            setattr(ip, attr, value)
    return processor


def _check_local(model_id: str) -> None:
    path = Path(model_id)
    looks_local = model_id.startswith((".", "/", "~")) or path.exists() or model_id.count("/") > 1
    if looks_local:
        if not path.expanduser().is_dir():
            raise ModelLoadError(f"{model_id}: model directory not found; check the path or run `mgpo tiny-model DIR`")
        folder = path.expanduser()
        if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"{model_id}: no config.json (or adapter_config.json) in this directory; it is not a saved model"
            )


def adapter_base(model_id: str) -> str | None:
    """The base model of a LoRA adapter directory (`mgpo train --lora --no-merge-lora`), else None."""
    config = Path(model_id).expanduser() / "adapter_config.json"
    if not config.is_file():
        return None
    import json

    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{config}: names no base_model_name_or_path; cannot tell which model it adapts")
    return str(base)


def _load_message(model_id: str, exc: Exception) -> str:
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot load model {model_id!r} ({detail}); give a local model directory, or a Hub id "
        "with network access or a filled HF cache"
    )


class HFBackend:
    """Holds a transformers model and its processor; generates batches of chat turns."""

    name = "hf"

    def __init__(
        self,
        model_id: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        attn_implementation: str | None = None,
        batch_size: int = 8,
        processor_min_pixels: int = 3136,
        processor_max_pixels: int = 12_845_056,
        sampling: dict[str, Any] | None = None,
        decoding: Sampling | None = None,
        vision_cache_mb: float = 1024,
    ):
        import torch
        from transformers import AutoModelForImageTextToText

        self.model_id = model_id
        self.device = resolve_device(device)
        self.batch_size = max(1, int(batch_size))  # read by the engine: how many samples it runs at once
        from mgpo.options import options_dict

        self.sampling = options_dict(sampling, "sampling")
        self.decoding = decoding or Sampling()
        self.processor = load_processor(model_id, processor_min_pixels, processor_max_pixels)
        kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype, self.device)}
        kwargs["attn_implementation"] = attn_implementation or default_attention(self.device, kwargs["dtype"])
        base = adapter_base(model_id)
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(base or model_id, **kwargs)
            if base is not None:  # a LoRA adapter: base + adapter, merged once for plain-speed generation
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(self.model, model_id).merge_and_unload()
        except Exception as exc:
            raise ModelLoadError(_load_message(model_id, exc)) from exc
        self.model.to(self.device).eval()
        self.model_type = getattr(self.model.config, "model_type", None)  # what mgpo.families resolves against
        tok = self.processor.tokenizer
        self.suppress = vision_token_ids(tok)
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self.eos_ids))
        self._torch = torch
        self.stats = {"prepare_s": 0.0, "generate_s": 0.0, "vision_hits": 0, "vision_misses": 0, "processor_skips": 0}
        self.vision_cache = VisionCache(int(float(vision_cache_mb) * 2**20), self.stats)
        self._batch_images: list | None = None  # the images of the batch being generated, in processor order
        if self.vision_cache.budget > 0:
            self._install_vision_cache()

    def default_max_new_tokens(self) -> int:
        return self.model.generation_config.max_new_tokens or DEFAULT_MAX_NEW_TOKENS

    # -----------------------------------------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Generation]:
        """One padded batch of all ``requests``. The engine sizes it (``batch_size`` is its default chunk): it
        chunks because it holds the decoded images, so this backend never splits a call again."""
        try:
            return self._generate_batch(list(requests))
        except Exception:
            # isolate the failure: one bad sample must not take the others' answers with it
            outs = []
            for req in requests:
                try:
                    outs.extend(self._generate_batch([req]))
                except Exception as exc:
                    if is_bug(exc):  # mgpo's own mistake: an internal error, which --resume does not retry
                        outs.append(Generation("", error=f"internal error in generation ({INTERNAL_HINT}): "
                                               f"{type(exc).__name__}: {_one_line(exc)}", error_kind="internal",
                                               extra={"traceback": debug_traceback(exc)}))  # fmt: skip
                    else:
                        outs.append(Generation("", error=f"generation failed: {_one_line(exc)}"))
            return outs

    def _install_vision_cache(self) -> None:
        """Route the model's vision encoder through the cache (models whose base exposes get_image_features)."""
        base = getattr(self.model, "base_model", None)
        encode = getattr(base, "get_image_features", None)
        if encode is None:
            return
        backend = weakref.proxy(self)

        def cached_image_features(pixel_values, image_grid_thw=None, **kwargs):
            return backend.vision_cache.features(encode, backend._batch_images, pixel_values, image_grid_thw, kwargs)

        base.get_image_features = cached_image_features  # instance attribute: generate() and forward() both use it
        self.processor.image_processor = SkippingImageProcessor(self.processor.image_processor, self.vision_cache)

    def _generate_batch(self, batch: list[Request]) -> list[Generation]:
        try:
            inputs, sequences, max_new, seconds = self._run_batch(batch)
        finally:  # pins and image lists are per batch, whatever happened
            self._batch_images = None
            self.vision_cache.pinned.clear()
        return self._decode(batch, inputs, sequences, max_new, seconds)

    def _run_batch(self, batch: list[Request]):
        torch = self._torch
        start = time.perf_counter()
        conversations = [r.messages for r in batch]
        self.vision_cache.pinned.clear()
        self.vision_cache.skipping = True  # only this backend's own generation may skip processing
        try:
            inputs = render_inputs(self.processor, conversations).to(self.device)
        finally:
            self.vision_cache.skipping = False
        prepared = time.perf_counter()
        self.stats["prepare_s"] += prepared - start
        max_new = max(r.max_new_tokens or self.default_max_new_tokens() for r in batch)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "repetition_penalty": 1.0,
            "suppress_tokens": self.suppress,
            "pad_token_id": self.pad_id,
        }
        if not self.decoding.greedy:  # seeded per row: a sample's tokens do not depend on its batch-mates
            from transformers import LogitsProcessorList

            seeds = [self.decoding.seed_for(r.seed_key, r.turn) for r in batch]
            sampler = per_row_sampler(seeds, self.decoding.temperature, self.decoding.top_p, self.device)
            gen_kwargs["logits_processor"] = LogitsProcessorList([sampler])
        gen_kwargs.update(self.sampling)
        self._batch_images = [p["image"] for m in (m for c in conversations for m in c) for p in _parts(m)
                              if p["type"] == "image"]  # fmt: skip
        with torch.inference_mode():
            sequences = self.model.generate(**inputs, **gen_kwargs)
        self.stats["generate_s"] += time.perf_counter() - prepared
        return inputs, sequences, max_new, (time.perf_counter() - start) / len(batch)

    def _decode(self, batch: list[Request], inputs, sequences, max_new: int, seconds: float) -> list[Generation]:
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = sequences[:, prompt_len:].tolist()
        out = []
        for row, req, mask in zip(new_tokens, batch, inputs["attention_mask"], strict=True):
            cap = req.max_new_tokens or max_new
            ids = _until_eos(row[:cap], self.eos_ids, self.pad_id)
            text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
            n_out = len(ids) + (1 if len(ids) < len(row[:cap]) and row[len(ids)] in self.eos_ids else 0)
            out.append(Generation(text, output_tokens=n_out, prompt_tokens=int(mask.sum()), seconds=seconds))
        return out


def default_attention(device: str, dtype) -> str:
    """flash-attention 2 on CUDA in half precision when the package is installed, else PyTorch SDPA."""
    import torch

    half = dtype in (torch.bfloat16, torch.float16)
    if device.startswith("cuda") and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


class VisionCache:
    """The vision encoder's output per image object, so an image shown again in a later turn is not re-encoded.

    Keyed by object identity (the engine passes the same PIL object for turn 1's image and for its re-showing);
    an entry, ``(embeddings, grid_thw row)``, dies with its image or when the byte budget is exceeded (least
    recently used first). Outputs are per image, which holds for every Qwen family: each image attends only to
    itself in the vision tower. Qwen3-VL's encoder also returns deepstack features (one per tapped vision layer,
    added to the first text layers); they are cached with the embeddings (``Encoded.deep``). Entries the current
    batch relies on are pinned until it is generated.
    """

    def __init__(self, budget_bytes: int, stats: dict[str, Any]):
        self.budget = budget_bytes
        self.stats = stats
        self.used = 0
        self.pinned: dict[int, tuple[Any, Any]] = {}
        self.skipping = False  # set while the owning backend renders a batch it is about to generate
        self.output_class: type | None = None  # the encoder's output type, when it carries deepstack features
        self._entries: OrderedDict[int, tuple[weakref.ref, tuple[Any, Any], int]] = OrderedDict()
        self._lock = threading.RLock()  # re-entrant: a weakref callback may fire while the lock is held

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, image) -> tuple[Any, Any] | None:
        """``(embeddings, grid_thw row)`` for this image object, or None."""
        if id(image) in self.pinned:
            return self.pinned[id(image)]
        with self._lock:
            hit = self._entries.get(id(image))
            if hit is None or hit[0]() is not image:
                return None
            self._entries.move_to_end(id(image))
            return hit[1]

    def put(self, image, embeddings, grid=None, deep: tuple | None = None) -> None:
        size = sum(int(t.numel() * t.element_size()) for t in (embeddings, *(deep or ())))
        if size > self.budget:
            return
        key = id(image)
        try:
            ref = weakref.ref(image, lambda _r, k=key: self._drop(k))
        except TypeError:
            return
        with self._lock:
            self._pop(key)
            self._entries[key] = (ref, Encoded(embeddings, grid, deep), size)
            self.used += size
            while self.used > self.budget and self._entries:
                self._pop(next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        with self._lock:
            self._pop(key)

    def _pop(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.used -= entry[2]

    def features(self, encode, images: list | None, pixel_values, grid_thw, kwargs: dict[str, Any]):
        """``get_image_features`` with cached images skipped: only the new images go through the encoder."""
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if images is None or grid_thw is None or len(images) != grid_thw.shape[0]:
            return encode(pixel_values, grid_thw, **kwargs)  # not a call we can attribute to images: no cache
        cached = [self.get(img) for img in images]
        missing = [i for i, c in enumerate(cached) if c is None]
        self.stats["vision_hits"] += len(images) - len(missing)
        self.stats["vision_misses"] += len(missing)
        embeddings = [c[0] if c is not None else None for c in cached]
        deeps = [c.deep if c is not None else None for c in cached]
        last_hidden = None
        if missing:
            bounds = [0, *torch.cumsum(grid_thw.prod(-1), 0).tolist()]
            rows = torch.cat([pixel_values[bounds[i] : bounds[i + 1]] for i in missing])
            out = encode(rows, grid_thw[missing], **kwargs)
            layers = getattr(out, "deepstack_features", None)  # Qwen3-VL: per layer, a tuple over images
            if layers is not None:
                self.output_class = type(out)
            for j, (i, emb) in enumerate(zip(missing, out.pooler_output, strict=True)):
                embeddings[i] = emb
                deeps[i] = tuple(layer[j] for layer in layers) if layers is not None else None
                self.put(images[i], emb, grid_thw[i].detach().cpu(), deeps[i])
            if len(missing) == len(images):
                last_hidden = out.last_hidden_state
        if any(d is not None for d in deeps):
            if self.output_class is None or any(d is None for d in deeps):  # one model: all or none have them
                raise RuntimeError("vision cache: an image's deepstack features are missing")
            deepstack = [tuple(d[k] for d in deeps) for k in range(len(deeps[0]))]
            return self.output_class(
                last_hidden_state=last_hidden, pooler_output=tuple(embeddings), deepstack_features=deepstack
            )
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden, pooler_output=tuple(embeddings))


class Encoded(tuple):
    """A cache entry: ``(embeddings, grid_thw row)``, and ``deep``, the image's deepstack features (Qwen3-VL) or
    None."""

    deep: tuple | None

    def __new__(cls, embeddings, grid, deep: tuple | None = None):
        entry = super().__new__(cls, (embeddings, grid))
        entry.deep = deep
        return entry


class SkippingImageProcessor:
    """Wraps the image processor: an image whose encoder output is cached is not processed again.

    Its patch rows are never read (the encoder is skipped for it), so it gets zero rows of the right count and its
    cached grid; the cache entry is pinned for the batch so it cannot be evicted before generation. Only active
    while the owning backend renders its own batch: anyone else using the processor gets real pixels.
    """

    def __init__(self, inner, cache: VisionCache):
        self.__dict__.update(inner=inner, cache=cache)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def __call__(self, images=None, *args, **kwargs):
        import torch
        from PIL import Image
        from transformers import BatchFeature

        flat = list(_flatten(images))
        if not self.cache.skipping or not flat or not all(isinstance(i, Image.Image) for i in flat):
            return self.inner(images, *args, **kwargs)
        hits = {id(i): hit for i in flat if (hit := self.cache.get(i)) is not None and hit[1] is not None}
        if not hits:
            return self.inner(images, *args, **kwargs)
        todo = [i for i in flat if id(i) not in hits]
        fresh = self.inner(todo, *args, **kwargs) if todo else None
        if fresh is not None and (set(fresh.keys()) != {"pixel_values", "image_grid_thw"}
                                  or not isinstance(fresh["pixel_values"], torch.Tensor)):  # fmt: skip
            return self.inner(images, *args, **kwargs)  # an output shape this wrapper does not know: no skipping
        width = fresh["pixel_values"].shape[1] if fresh is not None else _patch_width(self.inner)
        dtype = fresh["pixel_values"].dtype if fresh is not None else torch.float32
        pixels, grids, n = [], [], 0
        bounds = [0, *torch.cumsum(fresh["image_grid_thw"].prod(-1), 0).tolist()] if fresh is not None else [0]
        for image in flat:
            if id(image) in hits:
                grid = hits[id(image)][1]
                self.cache.pinned[id(image)] = hits[id(image)]
                pixels.append(torch.zeros((1, width), dtype=dtype).expand(int(grid.prod()), width))
                self.cache.stats["processor_skips"] = self.cache.stats.get("processor_skips", 0) + 1
            else:
                pixels.append(fresh["pixel_values"][bounds[n] : bounds[n + 1]])
                grid = fresh["image_grid_thw"][n]
                n += 1
            grids.append(grid.reshape(1, 3))
        data = {"pixel_values": torch.cat(pixels), "image_grid_thw": torch.cat(grids).to(torch.long)}
        return BatchFeature(data=data)


def _flatten(images):
    if isinstance(images, list | tuple):
        for item in images:
            yield from _flatten(item)
    elif images is not None:
        yield images


def _patch_width(image_processor) -> int:
    ip = image_processor
    return 3 * ip.temporal_patch_size * ip.patch_size * ip.patch_size


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return content if isinstance(content, list) else []


def render_inputs(processor, conversations: list[list[dict[str, Any]]]):
    """Chat-template, tokenise and process a batch of conversations (left-padded, images expanded)."""
    kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": True, "return_dict": True,
                              "return_tensors": "pt"}  # fmt: skip
    if _TAKES_PROCESSOR_KWARGS.setdefault(type(processor), _takes_processor_kwargs(processor)):
        kwargs["processor_kwargs"] = {"padding": True}
    else:  # older transformers take processor options directly
        kwargs["padding"] = True
    return processor.apply_chat_template(conversations, **kwargs)


_TAKES_PROCESSOR_KWARGS: dict[type, bool] = {}


def _takes_processor_kwargs(processor) -> bool:
    import inspect

    return "processor_kwargs" in inspect.signature(processor.apply_chat_template).parameters


def _until_eos(ids: list[int], eos: set[int], pad: int) -> list[int]:
    for i, t in enumerate(ids):
        if t in eos or t == pad:
            return ids[:i]
    return ids


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
