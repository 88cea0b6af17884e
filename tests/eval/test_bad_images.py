"""Every class of bad image through the real `mgpo eval` (scripted backend, no model): from a local JSONL of image
paths and from a local parquet of embedded image bytes, each bad row becomes an input-error row with one clear line,
every good row (CMYK, RGBA, LA, P, 16-bit, multi-frame, EXIF-rotated, exactly 200:1) finishes and is scored, and
the run ends with exit 2 and one line counting the samples that could not run (nothing prints a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mgpo.eval import docs
from mgpo.eval.run_log import read_rows

TURNS = ['```json\n[{"bbox_2d": [4, 4, 60, 24], "label": "t"}]\n```', "\\boxed{A}"]
# a pre-resize range that a 6000x30 image (exactly 200:1, 180,000 px) sits inside as it is, and every good file too
PIXELS = ["--min-pixels", "3136", "--max-pixels", "200000", "--crop-min-pixels", "3136", "--crop-max-pixels", "50176"]


@pytest.fixture
def cases(bad_files, good_files, tmp_path: Path) -> tuple[dict[str, tuple[Path, str]], dict[str, Path]]:
    """(bad: name -> (file, expected fragment), good: name -> file), with the 200:1 boundary among the good."""
    thin = tmp_path / "good" / "ratio200.png"
    Image.new("RGB", (6000, 30), (200, 0, 0)).save(thin)
    return bad_files, {**good_files, "ratio200.png": thin}


def _eval(kit, data: Path, tmp_path: Path):
    records, _ = docs.read_local_records(data)
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps({"id": r.id, "turns": TURNS}) + "\n" for r in records))
    out = tmp_path / "run"
    proc = kit.run([str(kit.bin / "mgpo"), "eval", "--task", "mgpo_vstar", "--data", str(data), "--backend", "scripted",
                    "--responses", str(responses), "--output-dir", str(out), *PIXELS], cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    rows = {r["question_id"]: r for r in read_rows(out / "trajectories.jsonl")}
    assert len(rows) == len(records)  # every row finished, none lost
    bad = sum(r["trajectory"]["error"] is not None for r in rows.values())
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {bad} sample(s) could not run (") and "fix or remove those rows" in last
    assert bad and "--resume" not in last  # a resume would meet the same files again
    results = json.loads((out / "results.json").read_text())["tasks"]["mgpo_vstar"]
    return rows, results


def _check(rows: dict, results: dict, bad: dict[str, str], good: list[str]) -> None:
    for name, expect in bad.items():
        traj = rows[name]["trajectory"]
        assert traj["error_kind"] == "input" and traj["turns"] == [], (name, traj["error"])
        assert "\n" not in traj["error"] and expect in traj["error"], (name, traj["error"])
        assert rows[name]["correct"] is False
    for name in good:
        traj = rows[name]["trajectory"]
        assert traj["error"] is None and len(traj["turns"]) == 2, (name, traj["error"])
        assert rows[name]["correct"] is True, name
    assert results["overall"]["accuracy"] == pytest.approx(100 * len(good) / (len(good) + len(bad)))


def test_jsonl_of_image_paths(cases, kit, tmp_path: Path) -> None:
    bad, good = cases
    rows = [{"id": name, "question": "What colour?", "choices": ["red", "blue"], "answer": "A", "image": str(path)}
            for name, path in [*((n, p) for n, (p, _) in bad.items()), *good.items()]]  # fmt: skip
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got, results = _eval(kit, tmp_path / "test.jsonl", tmp_path)
    _check(got, results, {n: e for n, (_, e) in bad.items()}, list(good))
    for name, (path, _) in bad.items():
        assert str(path) in got[name]["trajectory"]["error"]  # the line names the file


def test_parquet_of_embedded_image_bytes(cases, kit, tmp_path: Path) -> None:
    bad, good = cases
    embedded_bad = {n: (p, e) for n, (p, e) in bad.items() if p.is_file()}  # a missing file has no bytes to embed
    items = [*((n, p) for n, (p, _) in embedded_bad.items()), *good.items()]  # a bad row first: it sank them all
    rows = [{"question_id": name, "text": "What colour? (A) red (B) blue", "label": "A",
             "image": {"bytes": path.read_bytes(), "path": None}} for name, path in items]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "test.parquet")
    got, results = _eval(kit, tmp_path / "test.parquet", tmp_path)
    _check(got, results, {n: e for n, (_, e) in embedded_bad.items()}, list(good))
    for name in embedded_bad:
        assert got[name]["trajectory"]["error"].startswith("embedded image: ")
    for name, path in good.items():  # kept for `mgpo show` as the very bytes the run decoded (EXIF and all)
        assert Path(got[name]["trajectory"]["image_path"]).read_bytes() == path.read_bytes()
