"""vLLM backend: an in-process ``vllm.LLM`` (written against vLLM 0.32's documented offline API; not run in CI, which
has no GPU — see the README).

Each engine turn is one ``LLM.generate`` call over every live sample, and vLLM's scheduler batches them; with
``async_engine`` the backend holds vLLM's ``AsyncLLMEngine`` instead and takes one request at a time
(``generate_one``, ``concurrency`` in flight), so the engine pipelines per sample as it does for a server: each
sample's next turn goes in as soon as its last one returns, and continuous batching sees no turn barrier. Prompts are
rendered with the model's own chat template (the same text the hf backend feeds the model) and carry their images as
``multi_modal_data``. Prefix caching is on, so turn 2 — whose prompt starts with turn 1's whole conversation, full
image included — reuses turn 1's KV cache and computes only the new tokens. ``limit_mm_per_prompt`` allows one image
per turn, and the protocol's pixel limits go to vLLM's processor as ``mm_processor_kwargs``; the images are also sent
already at their model frame, so the processor's rounding is a no-op and the boxes stay in the engine's frame.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mgpo.backends.base import DEFAULT_MAX_NEW_TOKENS, Generation, Request
from mgpo.backends.frames import IdentityCache, to_model_frame
from mgpo.errors import MgpoError, ModelLoadError
from mgpo.families import pixel_kwargs
from mgpo.options import options_dict
from mgpo.sampling import Sampling

MISSING = "vLLM is not installed; pip install 'mgpo[vllm]' on a CUDA machine"


def import_vllm():
    """The vllm module, or one clear MgpoError where it is not installed (CPU machines, CI)."""
    try:
        import vllm
    except ImportError:
        raise MgpoError(MISSING) from None
    return vllm


def llm_kwargs(
    model_id: str,
    *,
    max_images: int,
    min_pixels: int,
    max_pixels: int,
    dtype: str = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
    pixel_keys: str = "min_max",
) -> dict[str, Any]:
    """Arguments for ``vllm.LLM``: prefix caching, one image per turn, the protocol's pixel limits."""
    kwargs: dict[str, Any] = {
        "model": model_id,
        "dtype": dtype,
        "tensor_parallel_size": int(tensor_parallel_size),
        "gpu_memory_utilization": float(gpu_memory_utilization),
        "enable_prefix_caching": True,  # turn 2 extends turn 1's prompt: its KV blocks are reused
        "limit_mm_per_prompt": {"image": int(max_images)},
        # in the keys the family's processor reads (Qwen3-VL / Qwen3.5: size={shortest_edge, longest_edge})
        "mm_processor_kwargs": pixel_kwargs(pixel_keys, min_pixels, max_pixels),
        "seed": int(seed),
    }
    if max_model_len:
        kwargs["max_model_len"] = int(max_model_len)
    kwargs.update(extra or {})
    return kwargs


def render_prompt(processor, messages: list[dict[str, Any]], frame) -> dict[str, Any]:
    """One vLLM prompt: chat-templated text with an image placeholder per image, and the images at their frames."""
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images = [frame(p["image"]) for m in messages if isinstance(m["content"], list) for p in m["content"]
              if p["type"] == "image"]  # fmt: skip
    prompt: dict[str, Any] = {"prompt": text}
    if images:
        prompt["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
    return prompt


class AsyncEngine:
    """vLLM's ``AsyncLLMEngine`` on an event loop of its own thread, so that the engine's request threads can each
    wait on one generation (``generate``) while vLLM batches all of them continuously."""

    def __init__(self, vllm, kwargs: dict[str, Any]):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="mgpo-vllm-loop")
        self.thread.start()

        async def build():
            # built inside the loop: the engine's output handler attaches to the loop that runs it
            return vllm.AsyncLLMEngine.from_engine_args(vllm.AsyncEngineArgs(**kwargs))

        try:
            self.engine = self._wait(build())
        except BaseException:
            self.close()
            raise

    def generate(self, prompt: dict[str, Any], params) -> Any:
        """The finished output of one request (blocks the calling thread, not the loop)."""

        async def run():
            final = None
            async for out in self.engine.generate(prompt, params, uuid.uuid4().hex):
                final = out
            if final is None:
                raise RuntimeError("vLLM returned no output")
            return final

        return self._wait(run())

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None and callable(getattr(engine, "shutdown", None)):
            engine.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)

    def _wait(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


class VLLMBackend:
    """Holds a ``vllm.LLM`` (one ``generate`` call per engine turn) or, with ``async_engine``, an ``AsyncEngine``
    (one request at a time, ``concurrency`` in flight)."""

    name = "vllm"

    def __init__(
        self,
        model_id: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int | str = 1,
        gpu_memory_utilization: float | str = 0.9,
        max_model_len: int | str | None = None,
        max_images: int | str = 2,
        max_new_tokens: int | str | None = None,
        sampling: dict[str, Any] | None = None,
        decoding: Sampling | None = None,
        seed: int | str = 0,
        processor_min_pixels: int = 3136,
        processor_max_pixels: int = 12_845_056,
        llm_options: dict[str, Any] | None = None,
        frame_unit: int = 28,
        pixel_keys: str = "min_max",
        async_engine: bool | str = False,
        concurrency: int | str = 64,
        **ignored: Any,
    ):
        unknown = set(ignored) - {"device", "batch_size", "attn_implementation"}  # vLLM places and batches itself
        if unknown:
            raise MgpoError(
                f"the vllm backend has no option {sorted(unknown)[0]!r}; it takes dtype, tensor_parallel_size, "
                "gpu_memory_utilization, max_model_len, max_images, max_new_tokens, sampling, seed, llm_options, "
                "async_engine, concurrency"
            )
        vllm = import_vllm()
        from mgpo.backends.hf import load_processor

        self.model_id = model_id
        self.limits = (int(processor_min_pixels), int(processor_max_pixels))
        self.frame_unit = int(frame_unit)  # the model family's (mgpo.families)
        self.processor = load_processor(model_id, *self.limits)  # chat template, same as the hf backend
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens else _generation_cap(model_id)
        self.sampling = options_dict(sampling, "sampling")
        self.decoding = decoding or Sampling()
        self._frames = IdentityCache()
        self._vllm = vllm
        kwargs = llm_kwargs(
            model_id, max_images=int(max_images), min_pixels=self.limits[0], max_pixels=self.limits[1], dtype=dtype,
            tensor_parallel_size=int(tensor_parallel_size), gpu_memory_utilization=float(gpu_memory_utilization),
            max_model_len=int(max_model_len) if max_model_len else None, seed=int(seed),
            extra=options_dict(llm_options, "llm_options"), pixel_keys=pixel_keys,
        )  # fmt: skip
        self.async_engine = str(async_engine).lower() in ("true", "1", "yes")
        self.llm = self.engine = None
        try:
            if self.async_engine:
                self.engine = AsyncEngine(vllm, kwargs)
                self.concurrency = max(1, int(concurrency))
                self.generate_one = self._generate_async  # what makes the engine pipeline per sample
            else:
                self.llm = vllm.LLM(**kwargs)
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"vLLM cannot load {model_id!r} ({detail})") from exc

    def default_max_new_tokens(self) -> int:
        return self.max_new_tokens

    def _frame(self, image):
        return self._frames.get(image, lambda: to_model_frame(image, *self.limits, self.frame_unit))

    def sampling_params(self, request: Request):
        params: dict[str, Any] = {
            "max_tokens": int(request.max_new_tokens or self.max_new_tokens),
            "temperature": 0.0,  # greedy unless sampling says otherwise; not the checkpoint's sampling defaults
            "repetition_penalty": 1.0,
            "skip_special_tokens": True,
        }
        if not self.decoding.greedy:  # SamplingParams(seed=...): a per-request generator in vLLM
            d = self.decoding
            params.update(temperature=d.temperature, top_p=d.top_p, seed=d.seed_for(request.seed_key, request.turn))
        params.update(self.sampling)
        return self._vllm.SamplingParams(**params)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def generate(self, requests: list[Request]) -> list[Generation]:
        if not requests:
            return []
        if self.engine is not None:  # a turn-synchronous caller: its requests still go in together
            with ThreadPoolExecutor(min(self.concurrency, len(requests))) as pool:
                return list(pool.map(self._generate_async, requests))
        start = time.perf_counter()
        try:
            prompts = [render_prompt(self.processor, r.messages, self._frame) for r in requests]
            outputs = self.llm.generate(prompts, [self.sampling_params(r) for r in requests], use_tqdm=False)
        except Exception:
            return [self._alone(r) for r in requests]  # find the request that failed; keep the others' answers
        seconds = (time.perf_counter() - start) / len(requests)
        return [_generation(out, seconds) for out in outputs]

    def _generate_async(self, request: Request) -> Generation:
        """One request through the async engine; thread-safe, a failure is this request's error alone."""
        start = time.perf_counter()
        try:
            prompt = render_prompt(self.processor, request.messages, self._frame)
            out = self.engine.generate(prompt, self.sampling_params(request))
        except Exception as exc:
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            return Generation("", error=f"vllm generation failed: {text}")
        return _generation(out, time.perf_counter() - start)

    def _alone(self, request: Request) -> Generation:
        start = time.perf_counter()
        try:
            prompt = render_prompt(self.processor, request.messages, self._frame)
            out = self.llm.generate([prompt], [self.sampling_params(request)], use_tqdm=False)[0]
        except Exception as exc:
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            return Generation("", error=f"vllm generation failed: {text}")
        return _generation(out, time.perf_counter() - start)


def _generation(out, seconds: float) -> Generation:
    completion = out.outputs[0]
    return Generation(
        completion.text,
        output_tokens=len(completion.token_ids),
        prompt_tokens=len(out.prompt_token_ids or []),
        seconds=seconds,
        extra={"finish_reason": completion.finish_reason, "cached_tokens": getattr(out, "num_cached_tokens", None)},
    )


def _generation_cap(model_id: str) -> int:
    """The checkpoint's max_new_tokens when it declares one, else the paper's cap."""
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(model_id).max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    except Exception:
        return DEFAULT_MAX_NEW_TOKENS
