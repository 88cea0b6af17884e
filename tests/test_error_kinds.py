"""Kinds of error: a bug inside mgpo is an internal error (never retried by --resume, traceback under MGPO_DEBUG), a
failing model or server is a backend error (retried), a bad image an input error; and the load check and the
episode agree on which images the model can take (a 6000x30 image, exactly 200:1, is 204.4:1 once resized)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mgpo.backends.scripted import ScriptedBackend
from mgpo.engine import Engine
from mgpo.errors import ImageError
from mgpo.eval.run_log import retryable
from mgpo.imaging import load_image
from mgpo.infer import load_input
from mgpo.protocol import ProtocolConfig
from mgpo.types import Sample

TURNS = {"turns": ['```json\n[{"bbox_2d": [10, 10, 200, 200], "label": "x"}]\n```', "\\boxed{A}"]}


class Raising(ScriptedBackend):
    """A backend whose generate raises the given exception (a bug, or a failing device) on the first call."""

    def __init__(self, exc: BaseException):
        super().__init__([TURNS] * 3)
        self.exc = exc

    def generate(self, requests):
        raise self.exc


def samples(n: int = 2) -> list[Sample]:
    return [Sample(Image.new("RGB", (400, 300)), "q?", ["a", "b"], "A", id=str(i)) for i in range(n)]


def row(traj) -> dict:
    return {"trajectory": traj.to_dict()}


def test_a_bug_in_generation_is_internal_and_not_retried(monkeypatch) -> None:
    monkeypatch.delenv("MGPO_DEBUG", raising=False)
    trajs = Engine(Raising(TypeError("unsupported operand"))).run(samples())
    for t in trajs:
        assert t.error_kind == "internal" and "TypeError: unsupported operand" in t.error and "bug" in t.error
        assert not retryable(row(t)) and "traceback" not in t.meta
    monkeypatch.setenv("MGPO_DEBUG", "1")
    traj = Engine(Raising(KeyError("pixel_values"))).run(samples(1))[0]
    assert traj.error_kind == "internal" and "Traceback" in traj.meta["traceback"]
    assert "KeyError: 'pixel_values'" in traj.meta["traceback"]


def test_a_failing_device_or_server_stays_a_backend_error() -> None:
    trajs = Engine(Raising(RuntimeError("CUDA out of memory"))).run(samples())
    assert all(t.error_kind == "backend" and retryable(row(t)) for t in trajs)
    assert "CUDA out of memory" in trajs[0].error


def test_a_bug_in_the_episode_step_is_internal_with_its_traceback(monkeypatch) -> None:
    monkeypatch.setenv("MGPO_DEBUG", "1")

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'x1'")

    monkeypatch.setattr("mgpo.episode.ground", broken)
    traj = Engine(ScriptedBackend([TURNS])).run(samples(1))[0]
    assert traj.error_kind == "internal" and "internal error on turn 1" in traj.error
    assert "AttributeError" in traj.meta["traceback"] and "broken" in traj.meta["traceback"]
    assert not retryable(row(traj))


def test_a_bug_while_starting_a_sample_fails_only_that_sample(monkeypatch) -> None:
    from mgpo.episode import Episode

    def flaky(original, question, choices, cfg):
        if question == "q0?":
            raise IndexError("list index out of range")
        return Episode(original, question, choices, cfg)

    monkeypatch.setattr("mgpo.engine.Episode", flaky)
    batch = [Sample(Image.new("RGB", (400, 300)), f"q{i}?", ["a", "b"], "A", id=str(i)) for i in range(2)]
    first, second = Engine(ScriptedBackend([TURNS] * 2)).run(batch)
    assert first.error_kind == "internal" and "IndexError" in first.error and first.turns == []
    assert second.error is None and second.correct is True


# ---------------------------------------------------------------------------------------------------------------
# The load check and the frame check agree


@pytest.fixture
def thin(tmp_path: Path) -> Path:
    path = tmp_path / "thin.png"
    Image.new("RGB", (6000, 30), (9, 9, 9)).save(path)  # exactly 200:1
    return path


def test_a_200_to_1_image_is_refused_at_load_naming_the_file(thin: Path) -> None:
    cfg = ProtocolConfig.paper()
    with pytest.raises(ImageError) as info:
        load_input(thin, None, cfg.image_mode, cfg.view_pixels)  # what infer calls before loading any model
    message = str(info.value)
    assert str(thin) in message and "6000x30 (200:1)" in message and "6335x31 (204.4:1)" in message
    assert load_image(thin).size == (6000, 30)  # the shape alone (no protocol) is within 200:1


def test_the_engine_reports_the_same_line_as_the_load_check(thin: Path) -> None:
    cfg = ProtocolConfig.paper()
    with pytest.raises(ImageError) as info:
        load_input(thin, None, cfg.image_mode, cfg.view_pixels)
    traj = Engine(ScriptedBackend([TURNS]), cfg).run([Sample(thin, "q?", ["a", "b"], "A")])[0]
    assert traj.error_kind == "input" and traj.error == str(info.value) and traj.turns == []
    # and an image the load check accepts is one the episode accepts: 8000x40 (200:1) needs no resize
    wide = Sample(Image.new("RGB", (8000, 40)), "q?", ["a", "b"], "A")
    assert Engine(ScriptedBackend([TURNS]), cfg).run([wide])[0].error_kind != "input"
