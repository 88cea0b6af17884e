"""Crop trajectories made visible: `mgpo show` in a terminal (half-block pictures, text panels, pager), and
exports to PNG and HTML. Modules: records (read/select), halfblock (pictures), panels (text), terminal (layout),
pager (interactive), export_png, export_html, show (`mgpo show` and eval's failures). ``print_trajectory`` and
``render_trajectory`` below are what `mgpo infer` and `mgpo demo` print for one trajectory.
"""

from __future__ import annotations

from PIL import Image
from rich.console import Console, RenderableType

from mgpo.types import Trajectory
from mgpo.view.records import Record, Selection, as_records, load_original, load_records, select
from mgpo.view.show import print_records, show_failures, show_file
from mgpo.view.terminal import build_view, draws_pictures, print_record

__all__ = [
    "Record",
    "Selection",
    "as_records",
    "load_records",
    "print_records",
    "print_trajectory",
    "render_trajectory",
    "select",
    "show_failures",
    "show_file",
]


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
