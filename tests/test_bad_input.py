"""Every class of bad input: one clear line, never a traceback; in a batch the sample records the error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgpo.backends.scripted import ScriptedBackend
from mgpo.engine import Engine
from mgpo.errors import ImageError
from mgpo.imaging import load_image
from mgpo.types import Sample

GOOD_TURNS = {"turns": ['```json\n[{"bbox_2d": [10, 10, 200, 200], "label": "x"}]\n```', "\\boxed{A}"]}


def test_each_bad_file_gives_one_clear_line(bad_files) -> None:
    for name, (path, expect) in bad_files.items():
        with pytest.raises(ImageError) as info:
            load_image(path)
        message = str(info.value)
        assert "\n" not in message, name
        assert str(path) in message, name
        assert expect in message, (name, message)


def test_truncated_files_fail_even_when_another_library_allows_them(bad_files, monkeypatch) -> None:
    import lmms_eval.api.task  # noqa: F401  (sets ImageFile.LOAD_TRUNCATED_IMAGES = True for the whole process)
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for name in ("truncated.png", "truncated.jpg"):
        with pytest.raises(ImageError, match=r"truncated|cannot decode"):
            load_image(bad_files[name][0])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the process-wide setting is left as it was


def test_decompression_bomb_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000)).save(path)
    with pytest.raises(ImageError, match="exceeds the limit of 1,000,000"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=10_000_000).size == (3000, 2000)


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        ("CMYK", lambda: Image.new("CMYK", (120, 80), (0, 255, 255, 0))),  # pure red in CMYK
        ("RGBA", lambda: Image.new("RGBA", (120, 80), (255, 0, 0, 255))),
        ("LA", lambda: Image.new("LA", (120, 80), (76, 255))),
        ("P", lambda: Image.new("RGB", (120, 80), (255, 0, 0)).convert("P")),
        ("L", lambda: Image.new("L", (120, 80), 76)),
        ("1", lambda: Image.new("1", (120, 80), 1)),
        ("I;16", lambda: Image.fromarray(np.full((80, 120), 65535, dtype=np.uint16))),
    ],
)
def test_modes_become_rgb(tmp_path: Path, mode: str, make) -> None:
    image = make()
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    path = tmp_path / f"x.{fmt.lower()}"
    image.save(path, fmt)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (120, 80)
    if mode == "I;16":
        assert loaded.getpixel((0, 0)) == (255, 255, 255)  # rescaled, not clipped to a wrong value
    if mode == "CMYK":
        assert loaded.getpixel((0, 0))[0] > 200 and loaded.getpixel((0, 0))[2] < 50


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(path)
    assert load_image(path).getpixel((5, 5)) == (255, 255, 255)
    pal = Image.new("P", (64, 64), 0)
    pal.putpalette([255, 0, 0] * 256)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    assert load_image(tmp_path / "pal.png").getpixel((5, 5)) == (255, 255, 255)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, "JPEG", exif=exif)
    loaded = load_image(path)
    assert loaded.size == (100, 200)
    assert load_image(loaded).size == (100, 200)  # loading the loaded image again does not rotate twice


def test_every_good_mode_runs_through_the_engine(good_files) -> None:
    """CMYK, RGBA, LA, P, I;16, 16-bit RGB, multi-frame GIF/TIFF, EXIF-rotated: from a path, from bytes, from a
    lazily opened PIL image; each an 8-bit RGB original of its upright size, and a finished, scored sample."""
    for name, path in good_files.items():
        for source in (path, path.read_bytes(), Image.open(path)):
            image = load_image(source)
            assert image.mode == "RGB" and image.size == (160, 120), (name, type(source))
    samples = [
        Sample(source, "q?", ["a", "b"], "A", id=f"{name}:{kind}")
        for name, path in good_files.items()
        for kind, source in (("path", path), ("bytes", path.read_bytes()), ("pil", Image.open(path)))
    ]
    trajs = Engine(ScriptedBackend([{"id": s.id, **GOOD_TURNS} for s in samples])).run(samples)
    assert [(t.id, t.error) for t in trajs if t.error] == []
    assert all(t.correct is True and len(t.turns) == 2 for t in trajs)


def test_a_bad_sample_does_not_sink_the_batch(bad_files, tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (800, 600), (10, 200, 30)).save(good)
    samples = [Sample(good, "q?", ["a", "b"], "A", id="good-0")]
    samples += [Sample(path, "q?", ["a", "b"], "A", id=name) for name, (path, _) in bad_files.items()]
    samples.append(Sample(good, "q?", ["a", "b"], "A", id="good-1"))
    responses = [{"id": s.id, **GOOD_TURNS} for s in samples]
    done: list[str] = []
    trajs = Engine(ScriptedBackend(responses)).run(samples, on_done=lambda i, t: done.append(t.id))
    by_id = {t.id: t for t in trajs}
    assert by_id["good-0"].correct is True and by_id["good-1"].correct is True
    for name in bad_files:
        traj = by_id[name]
        assert traj.error and "\n" not in traj.error and traj.correct is False and traj.turns == []
    assert sorted(done) == sorted(by_id)  # every sample reported exactly once


def test_backend_failure_on_one_sample_is_recorded() -> None:
    samples = [Sample(Image.new("RGB", (300, 300)), "q?", ["a", "b"], "B", id=str(i)) for i in range(3)]
    backend = ScriptedBackend([{"id": "0", **GOOD_TURNS}, {"id": "2", **GOOD_TURNS}])  # nothing for sample 1
    trajs = Engine(backend).run(samples)
    assert trajs[1].error and "no scripted response" in trajs[1].error
    assert [t.error for t in (trajs[0], trajs[2])] == [None, None]
    assert [t.answer for t in (trajs[0], trajs[2])] == ["A", "A"]
