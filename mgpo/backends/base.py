"""The small interface every backend implements: a batch of chat requests in, one generation per request out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

DEFAULT_MAX_NEW_TOKENS = 8192  # the paper's per-turn cap


@dataclass
class Request:
    """One conversation to continue: processor-style chat messages, and who it belongs to."""

    messages: list[dict[str, Any]]
    sample_index: int
    turn: int  # 0-based assistant turn being generated
    sample_id: str | None = None
    max_new_tokens: int | None = None
    seed_key: str | None = None  # whose draw this is (eval: task:doc:repeat), for per-sample sampling seeds


@dataclass
class Generation:
    """What the model wrote for one request."""

    text: str
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    seconds: float = 0.0
    error: str | None = None  # set when this request failed but the rest of the batch went on
    error_kind: str | None = None  # with error: None for a backend failure (--resume retries it), 'internal' for a bug
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A model that continues chat conversations containing images."""

    name: str

    def generate(self, requests: list[Request]) -> list[Generation]:
        """Generate one assistant turn per request, in order."""
        ...

    def default_max_new_tokens(self) -> int:
        """The per-turn cap when the protocol sets none."""
        ...


class BackendError(RuntimeError):
    """A failure inside a backend (server down, generation crash): recorded per sample, never fatal to a batch."""
