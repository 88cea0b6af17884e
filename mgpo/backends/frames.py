"""Images sent at their model frame: the size the engine's coordinates live in, which a Qwen processor keeps as is.

Remote and out-of-process backends (openai, vllm) run the model's processor where we cannot see it; sending every
image already resized to ``imaging.model_frame(size, processor_min_pixels, processor_max_pixels)`` makes that
processor's smart_resize a no-op, so the frame of the model's boxes is the one the engine computed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from PIL import Image

from mgpo import imaging


def to_model_frame(
    image: Image.Image, min_pixels: int, max_pixels: int, unit: int = imaging.PATCH_FACTOR
) -> Image.Image:
    """Resize to the frame the engine computed (``unit``: the model family's frame unit), so the server's
    smart_resize keeps it as it is.

    Bicubic, like Qwen's image processor, so the pixels match what the hf backend's processor would feed the model.
    """
    frame = imaging.model_frame(image.size, min_pixels, max_pixels, unit)
    if frame == image.size:
        return image
    return image.resize(frame, Image.Resampling.BICUBIC)


class IdentityCache:
    """Values derived from an image, keyed by the image object's identity, dropped when the image is collected."""

    def __init__(self) -> None:
        self._values: dict[int, tuple[weakref.ref, Any]] = {}
        self._lock = threading.Lock()

    def get(self, image: Image.Image, make: Callable[[], Any]) -> Any:
        key = id(image)
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and hit[0]() is image:
                return hit[1]
        value = make()
        try:
            ref = weakref.ref(image, lambda _r, k=key: self._values.pop(k, None))
        except TypeError:  # not weak-referenceable: don't cache
            return value
        with self._lock:
            self._values[key] = (ref, value)
        return value
