"""`--png`: the exported picture has each turn's box outline exactly where the trajectory puts it."""

from __future__ import annotations

from PIL import Image

from mgpo.artifacts import TURN_COLOURS
from mgpo.view.export_png import composite, export_png
from mgpo.view.records import load_original, load_records


def _close(a, b, tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_boxes_are_where_the_trajectory_says(eval_run, tmp_path):
    records = load_records(eval_run.path)
    paths = export_png(records, tmp_path / "out.png")
    assert [p.name for p in paths] == ["out-001.png", "out-002.png", "out-003.png"]
    for record, path in zip(records, paths, strict=True):
        original, _ = load_original(record)
        layout = composite(record, original)  # where the original sits; the file on disk is what is checked
        picture = Image.open(path).convert("RGB")
        assert picture.size == layout.image.size
        left, top, width, height = layout.overview
        scale = layout.scale
        assert abs(width - original.width * scale) < 1 and abs(height - original.height * scale) < 1

        # the original really is there: its own pixels, away from every box, at the claimed place and scale
        shrunk = original.resize((width, height), Image.Resampling.BILINEAR)
        for fx, fy in [(0.05, 0.05), (0.95, 0.1), (0.1, 0.95), (0.5, 0.2)]:
            x, y = int(width * fx), int(height * fy)
            got, ref = picture.getpixel((left + x, top + y)), shrunk.getpixel((x, y))
            assert _close(got, ref, 40), (fx, fy, got, ref)

        boxes = [(i, t.box_original) for i, t in enumerate(record.trajectory.turns) if t.box_original]
        for i, (x1, y1, x2, y2) in boxes:
            colour = TURN_COLOURS[i]
            px1, py1 = left + round(x1 * scale), top + round(y1 * scale)
            px2, py2 = left + round(x2 * scale), top + round(y2 * scale)
            mx, my = (px1 + px2) // 2, (py1 + py2) // 2
            # one pixel inside each edge (the outline is drawn inward), at the middle of the edge
            for point in [(mx, py1 + 1), (mx, py2 - 1), (px1 + 1, my), (px2 - 1, my)]:
                assert picture.getpixel(point) == colour, (record.label, point, picture.getpixel(point))
            # and well inside the box it is the image, not the outline
            assert picture.getpixel((mx, my)) != colour
        # s3 drew no box: no turn colour along where a box would be is required, but the caption says why
        assert len(boxes) == (0 if record.doc_id == "s3" else 1)


def test_crops_come_from_the_original_at_the_box(eval_run, tmp_path):
    record = load_records(eval_run.path)[0]
    original, _ = load_original(record)
    layout = composite(record, original)
    ((turn, (cx1, cy1, cx2, cy2)),) = layout.crop_boxes
    x1, y1, x2, y2 = record.trajectory.turns[0].box_original
    expected = original.crop((x1, y1, x2, y2)).resize((cx2 - cx1, cy2 - cy1), Image.Resampling.NEAREST)
    for fx, fy in [(0.5, 0.5), (0.2, 0.3), (0.8, 0.7)]:
        dx, dy = int((cx2 - cx1) * fx), int((cy2 - cy1) * fy)
        assert _close(layout.image.getpixel((cx1 + dx, cy1 + dy)), expected.getpixel((dx, dy)), 2)
    assert turn == 1 and cx2 - cx1 > (x2 - x1)  # shown larger than in the original


def test_missing_image_still_exports_the_text(eval_run, tmp_path):
    record = load_records(eval_run.path)[0]
    record.trajectory.image_path = str(tmp_path / "gone.png")
    (path,) = export_png([record], tmp_path / "single")
    assert path == tmp_path / "single.png"
    assert Image.open(path).size[0] > 600
