"""Crop trajectories made visible: `mgpo show` in a terminal (half-block pictures, text panels, pager), and
exports to PNG and HTML. Modules: records (read/select), halfblock (pictures), panels (text), terminal (layout),
pager (interactive), export_png, export_html, show (what the CLI, infer and eval call)."""

from mgpo.view.records import Record, Selection, as_records, load_records, select
from mgpo.view.show import print_records, show_failures, show_file

__all__ = [
    "Record",
    "Selection",
    "as_records",
    "load_records",
    "print_records",
    "select",
    "show_failures",
    "show_file",
]
