"""OpenAI-compatible chat backend: ``vllm serve``, SGLang, ``transformers serve`` or any ``/v1/chat/completions``.

The model's coordinates must stay in a frame the engine knows. The engine computes that frame with the protocol's
processor limits (``imaging.model_frame``: Qwen's smart_resize); this backend resizes every image to exactly that
frame before sending it, so the server's own processor finds sides that are already multiples of 28 inside its
limits and its rounding is a no-op. That holds for any server whose processor limits contain the frame (Qwen2.5-VL's
defaults, 3136..12845056 pixels, contain the paper's 200704..1003520); a server started with a smaller
``max_pixels`` would shrink the image again and the boxes would drift, so leave the server's limits at their
defaults or wider. Images travel as lossless PNG data URLs; a conversation is sent whole at every turn (servers with
prefix caching, such as vLLM and SGLang, reuse turn 1's KV cache for turn 2).

Requests run ``concurrency`` at a time: the engine pipelines per sample through ``generate_one`` (each sample's next
turn goes out as soon as its last one returns), ``generate`` runs one batch of requests on a thread pool. 429, 5xx,
timeouts and connection errors are retried with exponential backoff (tenacity); each request that still fails
becomes a per-sample ``Generation.error`` so a batch job keeps its finished work and can be resumed. The API key
comes from an environment variable and is never logged.
"""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from mgpo.backends.base import DEFAULT_MAX_NEW_TOKENS, Generation, Request
from mgpo.backends.frames import IdentityCache, to_model_frame
from mgpo.errors import MgpoError
from mgpo.options import options_dict
from mgpo.sampling import Sampling

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# generic harness options (lmms-eval passes them to every model) that mean nothing for a remote server
IGNORED_OPTIONS = frozenset({"device", "dtype", "batch_size", "attn_implementation"})


class _Retryable(Exception):
    """A failure worth another try: rate limit, server error, timeout, connection trouble."""


class _Fatal(Exception):
    """A failure that another try will not fix (4xx other than 429, malformed response)."""


class OpenAIBackend:
    """Sends each turn as a chat completion to an OpenAI-compatible server, several requests in flight."""

    name = "openai"

    def __init__(
        self,
        model: str | None,
        *,
        base_url: str | None = None,
        api_key_env: str | None = None,
        concurrency: int | str = 8,
        timeout: float | str = 600.0,
        connect_timeout: float | str = 10.0,
        max_retries: int | str = 4,
        backoff: float | str = 1.0,
        max_new_tokens: int | str | None = None,
        sampling: dict[str, Any] | None = None,
        decoding: Sampling | None = None,
        processor_min_pixels: int = 3136,
        processor_max_pixels: int = 12_845_056,
        check: bool | str = True,
        frame_unit: int = 28,
        **ignored: Any,
    ):
        unknown = set(ignored) - IGNORED_OPTIONS
        if unknown:
            raise MgpoError(
                f"the openai backend has no option {sorted(unknown)[0]!r}; it takes base_url, api_key_env, "
                "concurrency, timeout, connect_timeout, max_retries, backoff, max_new_tokens, sampling"
            )
        url = base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")
        if not url:
            raise MgpoError("the openai backend needs a server: add --base-url http://HOST:PORT/v1")
        self.base_url = _normalise_url(url)
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens not in (None, "", "none", "None") else None
        self.sampling = options_dict(sampling, "sampling")
        self.decoding = decoding or Sampling()
        self.frame_limits = (int(processor_min_pixels), int(processor_max_pixels))
        self.frame_unit = int(frame_unit)  # the model family's (mgpo.families): 28 Qwen2/2.5-VL, 32 Qwen3-VL/3.5
        headers = {"Content-Type": "application/json"}
        key = _api_key(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"  # lives only in the client's headers; never printed
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(float(timeout), connect=float(connect_timeout)),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        self._urls = IdentityCache()
        self._down: str | None = None  # set once the server proved unreachable in this generate() call
        self._lock = threading.Lock()
        if str(check).lower() not in ("false", "0", "no"):
            self.check_server()
        self.model = model or self._first_model()

    def __repr__(self) -> str:  # the key is in the client headers only; keep it out of reprs and logs
        return f"OpenAIBackend(base_url={self.base_url!r}, model={getattr(self, 'model', None)!r})"

    def default_max_new_tokens(self) -> int:
        return self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS

    def close(self) -> None:
        self.client.close()

    # -----------------------------------------------------------------------------------------------------------

    def check_server(self) -> None:
        """Fail fast, with one line, when nothing answers at base_url (any HTTP answer counts as alive)."""
        try:
            self.client.get("/models", timeout=self.client.timeout.connect or 10.0)
        except httpx.HTTPError as exc:
            self.client.close()
            raise MgpoError(self._unreachable(exc)) from None

    def _first_model(self) -> str:
        try:
            response = self.client.get("/models")
            response.raise_for_status()
            return str(response.json()["data"][0]["id"])
        except Exception:
            self.client.close()
            raise MgpoError(f"{self.base_url}: cannot list the served models; name the model with --model ID") from None

    def _unreachable(self, exc: BaseException) -> str:
        return (
            f"cannot reach the OpenAI-compatible server at {self.base_url} ({_describe(exc)}); "
            "start it (e.g. `vllm serve MODEL`) or fix --base-url"
        )

    # -----------------------------------------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Generation]:
        self._down = None
        if not requests:
            return []
        if len(requests) == 1 or self.concurrency == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))

    def generate_one(self, request: Request) -> Generation:
        """One request, thread-safe: what the engine's pipelined schedule calls, ``concurrency`` at a time."""
        return self._one(request)

    def prepare(self, request: Request) -> None:
        """Resize and encode the request's images now (the engine calls this in its loader threads); the request
        then finds the data URLs cached."""
        for message in request.messages:
            parts = message["content"]
            for part in parts if isinstance(parts, list) else []:
                if part.get("type") == "image":
                    self.image_url(part["image"])

    def reset_failures(self) -> None:
        """Forget that the server was found down: a new run tries it again."""
        with self._lock:
            self._down = None

    def chat_body(self, request: Request) -> dict[str, Any]:
        """The JSON body of one chat completion: the whole conversation, images at their model frame."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [self._message(m) for m in request.messages],
            "temperature": 0.0,  # greedy unless sampling says otherwise
        }
        # always capped: a server's own default may be the whole context, and hf / vllm stop at the same 8192
        body["max_tokens"] = int(request.max_new_tokens or self.default_max_new_tokens())
        if not self.decoding.greedy:  # the server seeds each request: per sample and turn, reproducible
            d = self.decoding
            body.update(temperature=d.temperature, top_p=d.top_p, seed=d.seed_for(request.seed_key, request.turn))
        body.update(self.sampling)
        return body

    def _one(self, request: Request) -> Generation:
        if self._down:  # the server is gone: don't spend every request's retry budget rediscovering it
            return Generation("", error=self._down)
        start = time.perf_counter()
        try:
            body = self.chat_body(request)
            data = self._post(body)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
        except _Fatal as exc:
            return Generation("", seconds=time.perf_counter() - start, error=str(exc))
        except (_Retryable, httpx.HTTPError) as exc:
            message = self._failure(exc)
            return Generation("", seconds=time.perf_counter() - start, error=message)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            message = f"{self.base_url}: malformed chat completion ({_describe(exc)})"
            return Generation("", seconds=time.perf_counter() - start, error=message)
        return Generation(
            text,
            output_tokens=usage.get("completion_tokens"),
            prompt_tokens=usage.get("prompt_tokens"),
            seconds=time.perf_counter() - start,
            extra={"finish_reason": choice.get("finish_reason")},
        )

    def _failure(self, exc: BaseException) -> str:
        cause = exc.__cause__ if isinstance(exc, _Retryable) and exc.__cause__ else exc
        if isinstance(cause, httpx.TransportError) and not isinstance(cause, httpx.ReadTimeout):
            message = self._unreachable(cause) + f" (after {self.max_retries} retries)"
            with self._lock:
                self._down = message
            return message
        return f"{self.base_url}: request failed after {self.max_retries} retries ({_describe(exc)})"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(initial=self.backoff, max=30.0, jitter=self.backoff),
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable) and not self._down),
            before_sleep=_no_log,
            reraise=True,
        )
        return retrying(self._post_once, body)

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.client.post("/chat/completions", json=body)
        except httpx.TransportError as exc:
            raise _Retryable(_describe(exc)) from exc
        if response.status_code in RETRY_STATUS:
            raise _Retryable(f"HTTP {response.status_code}: {_server_message(response)}")
        if response.status_code == 401 or response.status_code == 403:
            raise _Fatal(
                f"{self.base_url}: HTTP {response.status_code} (not authorised); set the API key in the environment "
                "variable named by api_key_env (default OPENAI_API_KEY)"
            )
        if response.status_code >= 400:
            raise _Fatal(f"{self.base_url}: HTTP {response.status_code}: {_server_message(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise _Fatal(f"{self.base_url}: response is not JSON ({_describe(exc)})") from exc

    def _message(self, message: dict[str, Any]) -> dict[str, Any]:
        parts = message["content"]
        if isinstance(parts, str):
            return {"role": message["role"], "content": parts}
        if all(p["type"] == "text" for p in parts):  # plain strings: what every server accepts for system/assistant
            return {"role": message["role"], "content": "".join(p["text"] for p in parts)}
        content = []
        for part in parts:
            if part["type"] == "text":
                content.append({"type": "text", "text": part["text"]})
            elif part["type"] == "image":
                content.append({"type": "image_url", "image_url": {"url": self.image_url(part["image"])}})
            else:
                raise MgpoError(f"the openai backend cannot send a {part['type']!r} content part")
        return {"role": message["role"], "content": content}

    def image_url(self, image: Image.Image) -> str:
        """A PNG data URL of ``image`` resized to its model frame (cached: turn 2 resends turn 1's image)."""
        return self._urls.get(image, lambda: encode_png(to_model_frame(image, *self.frame_limits, self.frame_unit)))


def encode_png(image: Image.Image) -> str:
    """A lossless PNG data URL; compression level 1 (several times faster than the default, bytes barely bigger)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _normalise_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.endswith("/v1") and "/v1/" not in url + "/":
        url += "/v1"
    return url


def _api_key(env_name: str | None) -> str | None:
    if env_name:
        key = os.environ.get(env_name)
        if not key:
            raise MgpoError(f"environment variable {env_name} (api_key_env) is not set; export it with the API key")
        return key
    return os.environ.get("OPENAI_API_KEY") or None


def _server_message(response: httpx.Response) -> str:
    try:
        detail = response.json()
    except ValueError:
        detail = response.text
    # servers answer errors as {"error": {"message"}}, {"detail"}, {"message"}, a bare list or plain text
    for _ in range(3):
        if isinstance(detail, list) and detail:
            detail = detail[0]
        if isinstance(detail, dict):
            detail = detail.get("error") or detail.get("detail") or detail.get("message") or detail
        if not isinstance(detail, list | dict):
            break
    text = str(detail)
    text = " ".join(text.split())
    return text[:200] if text else response.reason_phrase


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


def _no_log(state: RetryCallState) -> None:
    """Retries are silent: a log line could carry request details, and the final error says how many were made."""
