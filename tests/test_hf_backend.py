"""The transformers backend on the tiny Qwen2.5-VL: batching, greedy determinism, suppressed vision tokens."""

from __future__ import annotations

import pytest
from PIL import Image

from mgpo.backends.base import Request
from mgpo.backends.hf import HFBackend
from mgpo.engine import Engine
from mgpo.errors import ModelLoadError
from mgpo.protocol import ProtocolConfig, first_turn_messages
from mgpo.types import Sample

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(tiny_model_dir) -> HFBackend:
    return HFBackend(str(tiny_model_dir), device="cpu", batch_size=4)


def _requests(n: int) -> list[Request]:
    cfg = ProtocolConfig.paper()
    images = [Image.new("RGB", (300 + 60 * i, 200 + 40 * i), (40 * i, 90, 200)) for i in range(n)]
    return [Request(first_turn_messages(cfg, im, f"question {i}?", []), i, 0, max_new_tokens=12) for i, im in
            enumerate(images)]  # fmt: skip


def test_batched_equals_one_by_one(backend: HFBackend) -> None:
    requests = _requests(3)
    batched = backend.generate(requests)
    single = [backend.generate([r])[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.output_tokens and g.output_tokens <= 12 for g in batched)


def test_vision_tokens_are_suppressed(backend: HFBackend) -> None:
    tok = backend.processor.tokenizer
    assert {tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>")} <= set(
        backend.suppress
    )


def test_engine_with_tiny_model_runs_two_turns(backend: HFBackend) -> None:
    cfg = ProtocolConfig.paper(max_new_tokens=8)
    samples = [Sample(Image.new("RGB", (2000, 1500), "white"), "What colour?", ["red", "blue"], "A") for _ in range(2)]
    trajs = Engine(backend, cfg).run(samples)
    for traj in trajs:
        assert traj.error is None and len(traj.turns) == 2
        assert traj.turns[0].frame_size == [1148, 868]  # 2000x1500 -> pre-resize 1156x867 -> rounding
        assert all(0 < t.output_tokens <= 8 for t in traj.turns)


def test_missing_or_broken_model_dir(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="model directory not found"):
        HFBackend(str(tmp_path / "nope"))
    (tmp_path / "broken").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        HFBackend(str(tmp_path / "broken"))
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        HFBackend(str(tmp_path / "broken"))


@pytest.mark.parametrize(("local_rank", "expected"), [("0", "cuda:0"), ("3", "cuda:1"), (None, "cuda"), ("x", "cuda")])
def test_auto_device_under_a_launcher_is_this_ranks_own_gpu(monkeypatch, local_rank, expected) -> None:
    """One process per GPU (accelerate launch / torchrun sets LOCAL_RANK): rank r takes GPU r (modulo the count), so
    eight ranks never all load onto cuda:0; the selection only, on a CPU machine with the CUDA queries stood in."""
    import torch

    from mgpo.backends.hf import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert resolve_device("auto") == expected
