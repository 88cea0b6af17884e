"""Bad training images are refused before the model loads, in one line naming the row, the file, the reason and
the fix; images in every mode that must work train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import write_images
from typer.testing import CliRunner

from mgpo.cli import app
from mgpo.errors import MgpoError

REPO = Path(__file__).resolve().parents[2]


def _vqa_set(folder: Path, images: list[str]) -> Path:
    rows = [{"image_path": name, "question": "What colour is the square?", "choices": ["red", "blue"], "answer": "A",
             "id": f"s{i}"} for i, name in enumerate(images)]  # fmt: skip
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "train.jsonl"


@pytest.fixture
def third_row_truncated(tmp_path: Path) -> Path:
    """Four rows; the 3rd row's PNG is cut short (its header still reads, so only a decode finds it)."""
    names = write_images(tmp_path, 4)
    cut = tmp_path / names[2]
    cut.write_bytes(cut.read_bytes()[:2000])
    return _vqa_set(tmp_path, names)


@pytest.fixture
def model_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, list[str]]:
    """A model directory that passes the cheap checks, and a record of every attempt to load it."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    calls: list[str] = []

    def load_processor(model, *args, **kwargs):
        calls.append(model)
        raise RuntimeError("the model was loaded")

    monkeypatch.setattr("mgpo.backends.hf.load_processor", load_processor)
    return str(folder), calls


def test_a_truncated_image_in_row_3_is_refused_before_the_model_loads(third_row_truncated, model_loads, tmp_path):
    model, calls = model_loads
    result = CliRunner().invoke(app, ["train", "--data", str(third_row_truncated), "--model", model,
                                      "--output-dir", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, MgpoError), repr(result.exception)
    message = str(result.exception)
    assert "\n" not in message
    assert "row 2 (id s2)" in message and str(third_row_truncated.parent / "img_2.png") in message
    assert "truncated" in message and "remove the row" in message
    assert calls == []  # the model was never loaded
    assert not (tmp_path / "o").exists()  # and nothing was written


def test_through_the_mgpo_command_it_is_one_line_and_exit_2(third_row_truncated, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "not_a_model"}')  # loading it would fail differently
    proc = subprocess.run([sys.executable, "-m", "mgpo.cli", "train", "--data", str(third_row_truncated), "--model",
                           str(folder), "--output-dir", str(tmp_path / "o")], capture_output=True, text=True,
                          cwd=tmp_path, env={**_env(), "PYTHONPATH": str(REPO)}, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: ") and "row 2 (id s2)" in lines[-1], proc.stderr[-2000:]
    assert [ln for ln in lines if ln.startswith("error")] == [lines[-1]]  # one error line, and it is the last


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("MGPO_DEBUG",)}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NO_COLOR="1", COLUMNS="300")
    return env


# ---------------------------------------------------------------------------------------------------------------
# Embedded images: bytes in parquet (as pandas writes them, and as a datasets Image column), base64 in JSONL


def _png(size=(300, 200)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _check(spec: Path) -> int:
    from mgpo.protocol import ProtocolConfig
    from mgpo.train.data import check_images, load_training_data

    cfg = ProtocolConfig.paper()
    return check_images(load_training_data(spec), str(spec), 300_000_000, cfg.image_mode, cfg.view_pixels)


def test_embedded_bytes_in_parquet_name_the_row(tmp_path: Path) -> None:
    import pandas as pd

    good, cut = _png((900, 700)), _png((900, 700))[:500]
    rows = [{"image": {"bytes": b, "path": None}, "text": "Colour? (A) red (B) blue", "label": "A", "question_id": i}
            for i, b in enumerate([good, good, cut, good, cut])]  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "v.parquet")
    with pytest.raises(MgpoError) as info:
        _check(tmp_path / "v.parquet")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'v.parquet'}: row 2 (id 2) has an image training cannot use: embedded")
    assert "truncated" in message and "(1 more bad row(s): 4)" in message and "\n" not in message


def test_a_datasets_image_column_is_checked_from_its_bytes(tmp_path: Path) -> None:
    from datasets import Dataset
    from datasets import Image as ImageFeature

    table = Dataset.from_dict(
        {
            "image": [{"bytes": _png((900, 700)), "path": None}, {"bytes": b"GIF89a", "path": None}],
            "text": ["Colour? (A) red (B) blue"] * 2,
            "label": ["A", "B"],
            "question_id": [0, 1],
        }
    )
    table.cast_column("image", ImageFeature()).to_parquet(tmp_path / "hub.parquet")  # a Hub-style image feature
    with pytest.raises(MgpoError, match=r"row 1 \(id 1\) has an image training cannot use: embedded image: "):
        _check(tmp_path / "hub.parquet")


def test_base64_images_in_jsonl_name_the_row(tmp_path: Path) -> None:
    import base64

    cells = [base64.b64encode(_png((640, 480))).decode(), base64.b64encode(b"\x89PNG but not really" * 100).decode()]
    rows = [{"index": i, "question": "What is the colour?", "multi-choice options": ["(A) red", "(B) blue"],
             "answer": "B", "bytes": cell} for i, cell in enumerate(cells)]  # fmt: skip
    (tmp_path / "mme.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MgpoError, match=r"row 1 \(id 1\) .*not an image file"):
        _check(tmp_path / "mme.jsonl")
    (tmp_path / "mme.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert _check(tmp_path / "mme.jsonl") == 1
