"""Loading images safely and resizing them the way the protocol does. Pure PIL; no model, no prompts.

Two resizes decide the frame the model's coordinates live in (spec §3): the protocol's pre-resize into
[min_pixels, max_pixels] (``pre_resize``), then the processor's rounding to multiples of the model family's frame
unit (``model_frame``: 28 px for Qwen2/2.5-VL, 32 px for Qwen3-VL / Qwen3.5).
"""

from __future__ import annotations

import io
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mgpo.errors import ImageError

PATCH_FACTOR = 28  # patch_size 14 * spatial merge 2: Qwen2/2.5-VL's rounding unit (the default; see mgpo.families)
MIN_SIDE = 28  # smaller images or crops crash the Qwen processor
MAX_ASPECT = 200  # smart_resize raises above this
EXIF_ORIENTATION = 0x0112
DEFAULT_MAX_IMAGE_PIXELS = 300_000_000  # decompression-bomb guard, configurable per call

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


# ---------------------------------------------------------------------------------------------------------------
# Loading


IMAGE_MODES = ("reference", "upright")


def load_image(
    source: Image.Image | str | Path | bytes,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    mode: str = "upright",
    view_pixels: tuple[int, int] | None = None,
) -> Image.Image:
    """Open any common image as 8-bit RGB, or raise ImageError with a one-line reason.

    ``mode='reference'`` is the reference's ``Image.open(path).convert('RGB')``: no EXIF rotation, alpha dropped (the
    paper preset). ``mode='upright'`` applies the EXIF rotation, composites alpha on white and rescales 16-bit data.
    ``view_pixels`` (the protocol's (min_pixels, max_pixels)) also checks the view the protocol will resize it to,
    so an image that cannot be shown to the model fails here, named, rather than later in the episode.
    """
    if mode not in IMAGE_MODES:
        raise ValueError(f"image mode must be one of {', '.join(IMAGE_MODES)}; got {mode!r}")
    if not isinstance(source, Image.Image | str | Path | bytes):
        what = "no image" if source is None else f"an image of type {type(source).__name__}"
        raise ImageError(f"<image>: got {what}; give an image file path, bytes or a PIL image")
    if isinstance(source, Image.Image):
        name = "<image>"
        image = source
        _check_pixels(image.size, max_pixels, name)
    else:
        name = "embedded image" if isinstance(source, bytes) else str(source)
        image = _open(source, max_pixels, name)
    try:
        with _decoding():
            image.load()  # decode now, so truncated data fails here with a clear message
        if mode == "reference":
            image = image if image.mode == "RGB" else image.convert("RGB")
        else:
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # exif_transpose copies even upright images: 40+ ms
                image = ImageOps.exif_transpose(image)
            image = to_rgb(image)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated data surfaces here, at decode time
        raise ImageError(f"{name}: cannot decode image ({_short(exc)}); re-save it as PNG or JPEG") from exc
    if view_pixels is None:
        check_shape(image.size, name)
    else:
        check_view(image.size, *view_pixels, name=name)
    return image


def _open(source: str | Path | bytes, max_pixels: int, name: str) -> Image.Image:
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{name}: is empty (0 bytes); give a PNG, JPEG or other image file")
        fh: io.BytesIO | Path = io.BytesIO(source)
    else:
        fh = Path(source)
        if not fh.exists():
            raise ImageError(f"{name}: no such file; check the path")
        if fh.is_dir():
            raise ImageError(f"{name}: is a directory, not an image file")
        if fh.stat().st_size == 0:
            raise ImageError(f"{name}: file is empty (0 bytes); give a PNG, JPEG or other image file")
    try:
        with warnings.catch_warnings(), _decoding():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fh)
            _check_pixels(image.size, max_pixels, name)
            image.load()
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file Pillow can read; give a PNG, JPEG, WebP, TIFF or BMP") from exc
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        what = "data" if isinstance(source, bytes) else "file"
        raise ImageError(
            f"{name}: cannot decode image ({_short(exc)}); the {what} may be truncated or corrupt"
        ) from exc
    return image


@contextmanager
def _decoding() -> Iterator[None]:
    """Pillow's process-wide decoding settings as mgpo needs them, while any thread decodes.

    Truncated data is an error (another library, lmms-eval does, may have switched on LOAD_TRUNCATED_IMAGES, which
    silently pads with grey), and Pillow's own pixel limit is lifted because ours (``max_pixels``) applies instead.
    Images decode on several threads, so the settings are reference-counted under a lock: the first thread in saves
    them, the last one out restores them; a per-call save/restore would leave the guard off after overlapping calls.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            Image.MAX_IMAGE_PIXELS = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = _saved


_lock = threading.Lock()
_depth = 0
_saved: tuple[bool, int | None] = (False, None)


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageError(
            f"{name}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}; "
            "downscale it or raise the limit (--max-image-pixels)"
        )


def check_shape(size: tuple[int, int], name: str = "<image>") -> None:
    """Reject images the Qwen processor cannot take: a side under 28 px or an aspect ratio over 200:1."""
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name}: image is {w}x{h} px; each side must be at least {MIN_SIDE} px, upscale it first")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageError(
            f"{name}: aspect ratio {_ratio(w, h)} exceeds {MAX_ASPECT}:1, which Qwen-VL processors reject; crop or pad "
            "the image"
        )


def check_view(size: tuple[int, int], min_pixels: int, max_pixels: int, name: str = "<image>") -> None:
    """check_shape on the image, then on the view the protocol's pre-resize makes of it (what the processor gets).

    The two can disagree: the pre-resize truncates each side, so a 6000x30 image (exactly 200:1) becomes 6335x31
    (204.4:1) when it is scaled up into min_pixels. The load check and the episode both call this one function."""
    check_shape(size, name)
    view = pre_resize_size(size, min_pixels, max_pixels)
    vw, vh = view
    if min(vw, vh) < MIN_SIDE or max(vw, vh) / min(vw, vh) > MAX_ASPECT:
        raise ImageError(
            f"{name}: {size[0]}x{size[1]} ({_ratio(*size)}) becomes {vw}x{vh} ({_ratio(vw, vh)}) when resized into the "
            f"protocol's {min_pixels:,}..{max_pixels:,} pixels; Qwen-VL processors need each side at least "
            f"{MIN_SIDE} px and at most {MAX_ASPECT}:1, so crop or pad the image"
        )


def _ratio(w: int, h: int) -> str:
    r = max(w, h) / min(w, h)
    return f"{r:.0f}:1" if r == int(r) else f"{r:.1f}:1"


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha composited on white, 16/32-bit rescaled rather than clipped."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if image.mode.startswith("I;16") else (float(arr.min()), float(arr.max()))
        arr = np.clip((arr - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------------
# Resizing


def pre_resize_size(size: tuple[int, int], min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The reference's first resize: scale by sqrt(limit/area) and truncate, keeping the aspect ratio."""
    w, h = size
    if w * h > max_pixels:
        f = math.sqrt(max_pixels / (w * h))
        w, h = int(w * f), int(h * f)
    if w * h < min_pixels:
        f = math.sqrt(min_pixels / (w * h))
        w, h = int(w * f), int(h * f)
    return max(w, 1), max(h, 1)


def pre_resize(image: Image.Image, min_pixels: int, max_pixels: int, resampling: str = "nearest") -> Image.Image:
    """Resize into [min_pixels, max_pixels] as the reference does (a plain PIL resize)."""
    size = pre_resize_size(image.size, min_pixels, max_pixels)
    if size == image.size:
        return image
    return image.resize(size, RESAMPLING[resampling])


def model_frame(size: tuple[int, int], min_pixels: int, max_pixels: int, unit: int = PATCH_FACTOR) -> tuple[int, int]:
    """The (w, h) the processor turns an image of ``size`` into: transformers' smart_resize with the model family's
    frame unit (patch_size * merge_size: 28 for Qwen2/2.5-VL, 32 for Qwen3-VL / Qwen3.5)."""
    smart_resize = _smart_resize()
    w, h = size
    fh, fw = smart_resize(h, w, factor=unit, min_pixels=min_pixels, max_pixels=max_pixels)
    return fw, fh


def _smart_resize() -> Callable[..., tuple[int, int]]:
    # imported on first use: transformers takes seconds to import, and `mgpo show` loads images without needing it
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    return smart_resize


def preload() -> None:
    """Import what ``model_frame`` needs now, so the first image of a run does not wait seconds for transformers
    while a server sits idle."""
    _smart_resize()


def visual_tokens(frame: tuple[int, int], unit: int = PATCH_FACTOR) -> int:
    """Number of image-pad tokens the model spends on an image of this frame: one per unit x unit cell."""
    return (frame[0] // unit) * (frame[1] // unit)


def max_visual_tokens(max_pixels: int, unit: int = PATCH_FACTOR) -> int:
    """The most image-pad tokens an image resized under ``max_pixels`` can take."""
    return max_pixels // (unit * unit)


def fit_side_limits(size: tuple[int, int]) -> tuple[int, int]:
    """Grow a size so that each side is at least 28 px and the aspect ratio at most 200:1."""
    w, h = max(size[0], MIN_SIDE), max(size[1], MIN_SIDE)
    if w > h * MAX_ASPECT:
        h = math.ceil(w / MAX_ASPECT)
    if h > w * MAX_ASPECT:
        w = math.ceil(h / MAX_ASPECT)
    return w, h


def crop(image: Image.Image, box: list[int]) -> Image.Image:
    """Cut ``box`` (original pixels, [x1, y1, x2, y2]) out of the original image."""
    return image.crop(tuple(box))


def resize_crop(crop_image: Image.Image, min_pixels: int, max_pixels: int, resampling: str = "nearest") -> Image.Image:
    """Bring a crop into the pixel limits like the full image, never below 28 px a side or past 200:1."""
    size = fit_side_limits(pre_resize_size(crop_image.size, min_pixels, max_pixels))
    if size == crop_image.size:
        return crop_image
    return crop_image.resize(size, RESAMPLING[resampling])
