"""One image and one question through the engine: what `mgpo infer` and `mgpo demo` call (the engine itself and
its factory, ``build_engine``, live in mgpo.engine)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mgpo import imaging
from mgpo.engine import Engine
from mgpo.types import Sample, Trajectory


def load_input(
    image: str | Path | Image.Image,
    max_image_pixels: int | None = None,
    mode: str = "reference",
    view_pixels: tuple[int, int] | None = None,
) -> Image.Image:
    """Validate and load the input image up front, so a bad file fails before a model is loaded; ``view_pixels``
    (the protocol's min/max pixels) also rejects an image whose resized view the model could not take."""
    return imaging.load_image(image, max_image_pixels or imaging.DEFAULT_MAX_IMAGE_PIXELS, mode, view_pixels)


def infer(
    engine: Engine,
    image: str | Path | Image.Image,
    question: str,
    choices: list[str] | None = None,
    ground_truth: str | None = None,
    sample_id: str | None = None,
) -> Trajectory:
    """Run one sample; the trajectory records the image path when one was given."""
    original = (
        image
        if isinstance(image, Image.Image)
        else load_input(image, engine.max_image_pixels, engine.config.image_mode, engine.config.view_pixels)
    )
    traj = engine.run_one(Sample(original, question, list(choices or []), ground_truth, id=sample_id))
    if not isinstance(image, Image.Image):
        traj.image_path = str(image)
    return traj
