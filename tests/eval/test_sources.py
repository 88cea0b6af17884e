"""Hub-mode adapters (MME-RealWorld base64 images, HR-Bench columns) on stand-in local datasets, the registered
lmms-eval model, `mgpo compare`, and one-line CLI errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mgpo.eval import tasks as T
from mgpo.eval.compare import compare_runs
from mgpo.eval.run_log import RunLog


def _b64_png(size=(64, 48)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode() + " " * 1100  # long, like real base64 cells


def test_mmerw_hub_rows_decode_base64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cats = ["Perception/Monitoring", "Reasoning/Monitoring", "Perception/OCR with Complex Context"]
    frame = pd.DataFrame(
        [
            {
                "index": i,
                "question": f"q{i}?",
                "multi-choice options": ["(A) x", "(B) y", "(C) z"],
                "answer": "B",
                "category": cats[i % 3],
                "l2-category": "attr",
                "bytes": _b64_png(),
            }
            for i in range(6)
        ]
    )
    (tmp_path / "hub").mkdir()
    frame.to_parquet(tmp_path / "hub" / "train.parquet")
    monkeypatch.setitem(T.HUB, "mmerw_lite", (str(tmp_path / "hub"), None, "train"))
    monkeypatch.delenv(T.DATA_ENV, raising=False)
    ds = T.process_mmerw_lite(None)
    assert len(ds) == 6 and "bytes" not in ds.column_names  # base64 gone: logs and RAM stay small
    doc = ds[1]
    assert doc["image"] is None and Image.open(io.BytesIO(doc["image_bytes"])).size == (64, 48)  # decoded later
    assert doc["options"] == ["x", "y", "z"] and doc["category"] == "Reasoning/Monitoring"
    assert T.doc_to_visual(doc)[0].size == (64, 48)
    item = T.process_results(doc, ["\\boxed{B}"])
    assert set(item) == {"accuracy", "micro_accuracy"} and item["accuracy"]["score"] == 1


def test_hub_image_columns_reach_the_engine_as_their_own_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not decoded and re-encoded at build time: a truncated one would be padded grey by lmms-eval's
    LOAD_TRUNCATED_IMAGES, a bomb would sink the task, and a JPEG would lose its EXIF rotation."""
    import datasets

    buf = io.BytesIO()
    Image.new("RGB", (120, 80), (200, 0, 0)).save(buf, "JPEG")
    cells = [{"bytes": buf.getvalue(), "path": None}, {"bytes": buf.getvalue()[:300], "path": None}]
    table = datasets.Dataset.from_dict({"image": cells, "text": ["Colour? (A) red (B) blue"] * 2, "label": ["A"] * 2,
                                        "question_id": ["a", "b"], "category": ["direct_attributes"] * 2})  # fmt: skip
    (tmp_path / "hub").mkdir()
    table.cast_column("image", datasets.Image()).to_parquet(tmp_path / "hub" / "test.parquet")
    monkeypatch.setitem(T.HUB, "vstar", (str(tmp_path / "hub"), None, "test"))
    monkeypatch.delenv(T.DATA_ENV, raising=False)
    ds = T.process_vstar(None)
    assert [d["image_bytes"] for d in ds] == [c["bytes"] for c in cells]


def test_hrbench_local_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (80, 60)).save(tmp_path / "a.png")
    rows = [{"index": i, "question": "Which?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "C",
             "category": "single" if i else "cross", "image": "a.png"} for i in range(3)]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "hr.parquet")
    monkeypatch.setenv(T.DATA_ENV, str(tmp_path / "hr.parquet"))
    ds = T.process_hrbench8k(None)
    assert len(ds) == 3 and ds[0]["options"] == ["a", "b", "c", "d"] and Path(ds[0]["image_path"]).is_file()


def test_entry_point_resolves_the_chat_model() -> None:
    from lmms_eval.models import get_model

    from mgpo.eval.lmms_model import MgpoModel

    assert get_model("mgpo") is MgpoModel and MgpoModel.is_simple is False


def test_compare_runs(tmp_path: Path) -> None:
    def run(name: str, correct: list[int]) -> Path:
        rec = RunLog(tmp_path / name / "trajectories.jsonl")
        for i, c in enumerate(correct):
            category = "direct_attributes" if i % 2 else "relative_position"
            rec.write({"task": "mgpo_vstar", "doc_id": i, "category": category, "correct": bool(c), "trajectory": {}})
        return tmp_path / name

    base = run("base", [0] * 6 + [1] * 4)
    new = run("new", [1] * 6 + [1] * 4)
    cmp = compare_runs([base, new])
    assert cmp.table.loc[("mgpo_vstar", "overall"), "base"] == 40.0
    assert cmp.table.loc[("mgpo_vstar", "overall"), "new"] == 100.0
    assert cmp.deltas.loc[("mgpo_vstar", "overall"), "new"] == 60.0
    test = cmp.tests.iloc[0]
    assert (test.shared, test.only_baseline_right, test.only_run_right) == (10, 0, 6)
    assert test.p_value == pytest.approx(0.0312, abs=1e-4)


def test_bad_eval_input_fails_before_any_model(tmp_path: Path) -> None:
    from mgpo.errors import MgpoError
    from mgpo.eval.runner import EvalOptions, run_eval

    with pytest.raises(MgpoError, match="data path not found"):
        run_eval(EvalOptions(tasks=["mgpo_vstar"], output_dir=tmp_path / "o", data=tmp_path / "missing"))
    with pytest.raises(MgpoError, match="--repeats"):
        run_eval(EvalOptions(tasks=["mgpo_vstar"], output_dir=tmp_path / "o", repeats=0))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["compare", "/nonexistent/a", "/nonexistent/b"], "no trajectories.jsonl"),
        (["data", "synth", "--out", "/tmp/x", "--n", "0"], "--n must be at least 1"),
    ],
)
def test_user_errors_are_one_line(args: list[str], needle: str, kit) -> None:
    proc = kit.run([str(kit.bin / "mgpo"), *args], cwd=kit.repo, timeout=120)
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
