"""Bad data fails its own sample with one line, never the task: corrupt embedded images, .json arrays, no image."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mgpo import imaging
from mgpo.errors import ImageError, MgpoError
from mgpo.eval import docs
from mgpo.eval.run_log import read_rows


def _b64_png(size=(640, 480)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _mmerw_rows(n: int, corrupt: int) -> list[dict]:
    rows = []
    for i in range(n):
        image = _b64_png() if i != corrupt else base64.b64encode(b"\x89PNG but not really" * 100).decode()
        rows.append({"index": i, "question": f"q{i}?", "multi-choice options": ["(A) x", "(B) y"], "answer": "B",
                     "category": "Perception/Monitoring", "l2-category": "attr", "bytes": image})  # fmt: skip
    return rows


def test_one_corrupt_embedded_image_fails_only_its_sample(tmp_path: Path, kit) -> None:
    data = tmp_path / "mmerw.parquet"
    pd.DataFrame(_mmerw_rows(4, corrupt=2)).to_parquet(data)
    records, _ = docs.read_local_records(data)
    turns = ['```json\n[{"bbox_2d": [50, 50, 300, 300], "label": "t"}]\n```', "\\boxed{B}"]
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps({"id": r.id, "turns": turns}) + "\n" for r in records))
    out = tmp_path / "run"
    proc = kit.run([str(kit.bin / "mgpo"), "eval", "--task", "mgpo_mmerw_lite", "--data", str(data), "--backend",
                    "scripted", "--responses", str(responses), "--output-dir", str(out)], cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # the run finished, but not every sample ran: one line says so
    assert proc.stderr.strip().splitlines()[-1].startswith("error: 1 sample(s) could not run (embedded image: ")
    assert "Traceback" not in proc.stderr
    rows = sorted(read_rows(out / "trajectories.jsonl"), key=lambda r: r["doc_id"])
    assert len(rows) == 4
    errors = [r["trajectory"]["error"] for r in rows]
    assert [e is None for e in errors] == [True, True, False, True]
    assert errors[2].startswith("embedded image: not an image file") and rows[2]["trajectory"]["error_kind"] == "input"
    assert [r["correct"] for r in rows] == [True, True, False, True]


def test_a_json_array_data_file_is_read_as_rows(tmp_path: Path) -> None:
    Image.new("RGB", (300, 200)).save(tmp_path / "a.png")
    rows = [{"question_id": f"q{i}", "image": "a.png", "text": "What colour?", "label": "A", "bbox": [[1, 1, 50, 50]],
             "category": "direct_attributes", "options": ["red", "blue"]} for i in range(3)]  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(rows))
    got, base = docs.read_local_rows(tmp_path / "data.json")
    assert got == rows and base == tmp_path
    (tmp_path / "one.json").write_text(json.dumps(rows[0]))
    with pytest.raises(MgpoError, match="must hold an array of row objects"):
        docs.read_local_rows(tmp_path / "one.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(MgpoError, match="not valid JSON"):
        docs.read_local_rows(tmp_path / "broken.json")


@pytest.mark.parametrize("source", [None, 3, ["a.png"]])
def test_no_image_is_an_image_error(source) -> None:
    with pytest.raises(ImageError, match="give an image file path"):
        imaging.load_image(source)


def test_a_missing_image_does_not_sink_the_batch() -> None:
    from mgpo.backends.scripted import ScriptedBackend
    from mgpo.engine import Engine
    from mgpo.types import Sample

    turns = ['```json\n[{"bbox_2d": [50, 50, 300, 300], "label": "t"}]\n```', "\\boxed{A}"]
    backend = ScriptedBackend([{"turns": turns}, {"turns": turns}])
    good = Sample(Image.new("RGB", (640, 480)), "q?", ["x", "y"], "A", id="good")
    bad = Sample(None, "q?", ["x", "y"], "A", id="bad")  # type: ignore[arg-type]
    trajs = Engine(backend).run([bad, good])
    assert trajs[0].error_kind == "input" and "no image" in trajs[0].error
    assert trajs[1].error is None and trajs[1].correct is True
