"""Replays model outputs from a JSONL file: for offline debugging, re-scoring and tests.

Line i holds sample i's turns, ``{"turns": ["turn-1 text", "turn-2 text", ...]}``; a line may also carry ``"id"``,
in which case samples are matched by id instead of position (so the order in which they run does not matter).
"""

from __future__ import annotations

import time
from pathlib import Path

from mgpo.backends.base import DEFAULT_MAX_NEW_TOKENS, Generation, Request
from mgpo.errors import MgpoError
from mgpo.types import iter_jsonl


class ScriptedBackend:
    """A backend whose 'model' is a file of recorded turns."""

    name = "scripted"

    def __init__(self, responses: list[dict] | str | Path, tokenizer=None):
        self.by_index, self.by_id = _load(responses)
        self.tokenizer = tokenizer  # when given, output_tokens are counted with it

    def generate(self, requests: list[Request]) -> list[Generation]:
        out = []
        for req in requests:
            start = time.perf_counter()
            if self.by_id and req.sample_id is not None:  # keyed files match by id only, never by position
                turns = self.by_id.get(str(req.sample_id))
            else:
                turns = self.by_index[req.sample_index] if req.sample_index < len(self.by_index) else None
            if turns is None:
                out.append(Generation("", error=f"no scripted response for sample {req.sample_id or req.sample_index}"))
                continue
            text = turns[req.turn] if req.turn < len(turns) else ""
            n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if self.tokenizer else None
            out.append(Generation(text, output_tokens=n, seconds=time.perf_counter() - start))
        return out

    def default_max_new_tokens(self) -> int:
        return DEFAULT_MAX_NEW_TOKENS


def _load(responses: list[dict] | str | Path) -> tuple[list[list[str]], dict[str, list[str]]]:
    if isinstance(responses, str | Path):
        path = Path(responses)
        if not path.is_file():
            raise MgpoError(f'{path}: responses file not found; give a JSONL file of {{"turns": [...]}} lines')
        rows = list(iter_jsonl(path, '{"turns": [...]}', torn_tail=False))
    else:
        rows = list(responses)
    by_index, by_id = [], {}
    for n, row in enumerate(rows, 1):
        turns = row.get("turns") if isinstance(row, dict) else None
        if not (isinstance(turns, list) and all(isinstance(t, str) for t in turns)):
            raise MgpoError(f'scripted responses, entry {n}: needs "turns": a list of strings')
        by_index.append(turns)
        if row.get("id") is not None:
            by_id[str(row["id"])] = turns
    return by_index, by_id
