"""One image and one question through the engine: what `mgpo infer` and `mgpo demo` call (the engine itself and
its factory, ``build_engine``, live in mgpo.engine)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mgpo import imaging
from mgpo.answers import LETTERS
from mgpo.engine import Engine
from mgpo.errors import MgpoError
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


def check_ground_truth(ground_truth: str | None, choices: list[str] | None) -> str | None:
    """The ground truth as the option letter it must be when there are choices (``b`` -> ``B``); a letter past the
    last choice, or anything else, is one line before a model loads. Without choices any text is a ground truth."""
    if ground_truth is None or not choices:
        return ground_truth
    valid = LETTERS[: len(choices)]
    letter = ground_truth.strip().strip("()").upper()
    if len(letter) != 1 or letter not in valid:
        raise MgpoError(
            f"--ground-truth {ground_truth!r}: with {len(choices)} choice(s) the answer is a letter {valid[0]}-"
            f"{valid[-1]} (the --choice options in order)"
        )
    return letter


def infer(
    engine: Engine,
    image: str | Path | Image.Image,
    question: str,
    choices: list[str] | None = None,
    ground_truth: str | None = None,
    sample_id: str | None = None,
) -> Trajectory:
    """Run one sample; the trajectory records the image path when one was given."""
    ground_truth = check_ground_truth(ground_truth, choices)
    original = (
        image
        if isinstance(image, Image.Image)
        else load_input(image, engine.max_image_pixels, engine.config.image_mode, engine.config.view_pixels)
    )
    traj = engine.run_one(Sample(original, question, list(choices or []), ground_truth, id=sample_id))
    if not isinstance(image, Image.Image):
        traj.image_path = str(image)
    return traj
