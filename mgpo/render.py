"""The public entry for drawing one trajectory in a terminal: what `mgpo infer` and `mgpo demo` print.

The view itself lives in mgpo.view (pictures in half-blocks, text panels, pager, exports); this module keeps the
two calls the rest of mgpo uses stable.
"""

from __future__ import annotations

from PIL import Image
from rich.console import Console, RenderableType

from mgpo.types import Trajectory
from mgpo.view.records import Record, load_original
from mgpo.view.show import show_failures
from mgpo.view.terminal import build_view, draws_pictures, print_record

__all__ = ["print_trajectory", "render_trajectory", "show_failures"]


def render_trajectory(
    traj: Trajectory,
    image: Image.Image | None = None,
    width: int = 120,
    height: int | None = None,
    colour: bool = True,
) -> RenderableType:
    """The trajectory's view as one rich renderable; pictures only with colour and an image."""
    return build_view(Record(traj), image, width, height, colour)


def print_trajectory(traj: Trajectory, console: Console | None = None, image: Image.Image | None = None) -> None:
    """Print the trajectory sized to the console; the original comes from ``image`` or else from its image_path."""
    console = console or Console()
    record = Record(traj)
    note = None
    if image is None and draws_pictures(console) and traj.image_path:
        image, note = load_original(record)
    print_record(record, console, image, note)
