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


# ---------------------------------------------------------------------------------------------------------------
# Every class: the bad ones refused up front (as files and as embedded bytes), the good modes train


def test_each_bad_class_is_refused_before_training(bad_files, tmp_path: Path) -> None:
    import pandas as pd

    good = write_images(tmp_path, 1)[0]
    for name, (path, expect) in bad_files.items():
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / "good.png").write_bytes((tmp_path / good).read_bytes())
        spec = _vqa_set(folder, ["good.png", str(path)])
        with pytest.raises(MgpoError) as info:
            _check(spec)
        message = str(info.value)
        assert "\n" not in message and str(path) in message, message
        if not path.is_file():  # no file to open: found by the path check that comes first
            assert "1 image file(s) not found, first at row 1" in message, message
            continue
        assert "row 1 (id s1)" in message and expect in message and message.endswith("remove the row"), message
        cells = [(folder / "good.png").read_bytes(), path.read_bytes()]
        rows = [{"image": {"bytes": b, "path": None}, "text": "Colour? (A) red (B) blue", "label": "A",
                 "question_id": f"q{i}"} for i, b in enumerate(cells)]  # fmt: skip
        pd.DataFrame(rows).to_parquet(folder / "embedded.parquet")
        with pytest.raises(MgpoError, match=r"row 1 \(id q1\) has an image training cannot use: embedded image: "):
            _check(folder / "embedded.parquet")


def test_a_200_to_1_image_passes_the_check_where_the_protocol_keeps_it_so(tmp_path: Path) -> None:
    from PIL import Image

    from mgpo.protocol import ProtocolConfig
    from mgpo.train.data import check_images, load_training_data

    Image.new("RGB", (6000, 30), (200, 0, 0)).save(tmp_path / "thin.png")
    Image.new("RGB", (6030, 30), (200, 0, 0)).save(tmp_path / "thinner.png")
    spec = _vqa_set(tmp_path, ["thin.png"])
    roomy = ProtocolConfig.paper(min_pixels=3136, max_pixels=200_000)  # 180,000 px: no resize, so 200:1 stays
    assert check_images(load_training_data(spec), "d", 10**8, roomy.image_mode, roomy.view_pixels) == 1
    paper = ProtocolConfig.paper()  # scaled up into 200,704 px it would be 6335x31: refused, saying so
    with pytest.raises(MgpoError, match=r"becomes 6335x31 \(204.4:1\)"):
        check_images(load_training_data(spec), "d", 10**8, paper.image_mode, paper.view_pixels)
    spec = _vqa_set(tmp_path, ["thinner.png"])
    with pytest.raises(MgpoError, match="aspect ratio 201:1 exceeds 200:1"):
        check_images(load_training_data(spec), "d", 10**8, roomy.image_mode, roomy.view_pixels)


def test_every_good_mode_trains_one_step(good_files, tiny_model_dir, tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    from mgpo.train import trainer as trainer_module

    thin = tmp_path / "good" / "ratio200.png"
    Image.new("RGB", (6000, 30), (200, 0, 0)).save(thin)
    files = [*good_files.values(), thin]
    spec = _vqa_set(tmp_path / "good", [p.name for p in files])
    opened: list[str] = []
    real_open = trainer_module.open_image

    def open_image(value, *args, **kwargs):
        image = real_open(value, *args, **kwargs)
        opened.append(Path(value).name)
        return image

    monkeypatch.setattr(trainer_module, "open_image", open_image)
    out = tmp_path / "o"
    n = 2
    result = CliRunner().invoke(app, [
        "train", "--algo", "mgpo", "--data", str(spec), "--model", str(tiny_model_dir), "--output-dir", str(out),
        "--max-steps", "1", "--num-generations", str(n), "--batch-size", str(n * len(files)),
        "--turn-max-new-tokens", "8", "--min-pixels", "3136", "--max-pixels", "200000", "--crop-min-pixels", "3136",
        "--crop-max-pixels", "12544", "--set", "save_strategy=no"])  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "trained 1 step(s)" in result.output
    assert sorted(set(opened)) == sorted(p.name for p in files)  # every row was rolled out in the one step
    steps = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "loss" in s] == [1]
