"""Decoding settings for infer and eval: greedy (the deterministic default) or seeded sampling, seeded per sample.

A sample's seed is derived from (seed, its key, turn), where eval's key is (task, doc id, repeat): the same sample
draws the same tokens whatever the run, batch size, batch composition or --resume, and each repeat draws anew, so
``--repeats k`` at T=1.0 is a real Avg@k. ``paper`` is the reference's validation setting (spec §4): T=1.0,
top_p=1.0, sampled. The scripted backend ignores all of this.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from mgpo.errors import MgpoError

PRESETS = {"greedy": (0.0, 1.0), "paper": (1.0, 1.0)}


@dataclass(frozen=True)
class Sampling:
    """temperature 0 = greedy; otherwise temperature / top-p sampling with per-sample seeds derived from ``seed``."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise MgpoError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise MgpoError(f"--top-p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def seed_for(self, key: str | None, turn: int) -> int:
        """The seed of one sample's turn: stable across runs and processes (not Python's salted hash)."""
        digest = hashlib.sha256(f"{self.seed}|{key}|{turn}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & (2**63 - 1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mode": "greedy" if self.greedy else "sampled"}

    @classmethod
    def make(cls, preset: str | None = None, temperature: float | str | None = None, top_p: float | str | None = None,
             seed: int | str | None = None) -> Sampling:  # fmt: skip
        """From CLI or lmms-eval model_args values (text is converted): a preset (greedy | paper), overridden by any
        explicit value."""
        if preset is not None and preset not in PRESETS:
            raise MgpoError(f"unknown --sampling {preset!r}; use one of: {', '.join(PRESETS)}")
        t, p = PRESETS[preset or "greedy"]
        try:
            return cls(t if temperature is None else float(temperature), p if top_p is None else float(top_p),
                       0 if seed is None else int(seed))  # fmt: skip
        except ValueError as exc:
            raise MgpoError(f"sampling settings must be numbers ({exc})") from None


def per_row_sampler(seeds: list[int], temperature: float, top_p: float, device: str):
    """A transformers LogitsProcessor for greedy ``generate``: each row's token is drawn (temperature, top-p) with
    that row's own torch.Generator and every other token masked, so greedy decoding picks the drawn token.

    ``generate(do_sample=True)`` draws a whole batch from one RNG, so a sample's tokens would depend on which
    samples share its batch; per-row generators make them depend only on the sample's seed.
    """
    import torch
    from transformers import LogitsProcessor

    class PerRowSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.float() / temperature, dim=-1)
            if top_p < 1.0:  # keep the smallest set of tokens whose mass reaches top_p
                sorted_p, order = probs.sort(dim=-1, descending=True)
                drop = sorted_p.cumsum(-1) - sorted_p > top_p
                probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
            out = torch.full_like(scores, float("-inf"))
            for i, gen in enumerate(self.generators):
                token = torch.multinomial(probs[i], 1, generator=gen)
                out[i, token] = 0.0
            return out

    return PerRowSampler()
