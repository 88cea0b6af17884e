"""Backend options as they arrive from the CLI, Python or lmms-eval ``--model_args`` (where every value is text)."""

from __future__ import annotations

import json
from typing import Any

from mgpo.errors import MgpoError


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
