"""Sampling in infer/eval: per-sample seeds, reproducible across batch sizes, reaching every backend."""

from __future__ import annotations

import pytest
from PIL import Image

from mgpo.backends.base import Request
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig, first_turn_messages
from mgpo.sampling import Sampling


def _requests(n: int) -> list[Request]:
    cfg = ProtocolConfig.paper()
    images = [Image.new("RGB", (300 + 60 * i, 200 + 40 * i), (40 * i, 90, 200)) for i in range(n)]
    return [Request(first_turn_messages(cfg, im, f"question {i}?", []), i, 0, max_new_tokens=10,
                    seed_key=f"mgpo_vstar:{i}:0") for i, im in enumerate(images)]  # fmt: skip


def test_presets_and_bad_values() -> None:
    assert Sampling.make().greedy and Sampling.make("paper") == Sampling(1.0, 1.0, 0)
    assert Sampling.make("paper", top_p=0.9, seed=3) == Sampling(1.0, 0.9, 3)
    s = Sampling(1.0, seed=7)
    assert s.seed_for("t:1:0", 0) == s.seed_for("t:1:0", 0) != s.seed_for("t:1:1", 0) != s.seed_for("t:1:0", 1)
    with pytest.raises(MgpoError, match="--top-p"):
        Sampling(1.0, top_p=0)
    with pytest.raises(MgpoError, match="--sampling"):
        Sampling.make("hot")


@pytest.mark.slow
def test_hf_sampling_is_per_sample_whatever_the_batch(tiny_model_dir) -> None:
    from mgpo.backends.hf import HFBackend

    def texts(batch_size: int, seed: int, requests: list[Request]) -> list[str]:
        # the engine sizes the batches: here, calls of batch_size requests each
        be = HFBackend(str(tiny_model_dir), device="cpu", decoding=Sampling(1.0, 1.0, seed))
        calls = [requests[i : i + batch_size] for i in range(0, len(requests), batch_size)]
        return [g.text for call in calls for g in be.generate(call)]

    requests = _requests(3)
    one, three = texts(1, 0, requests), texts(3, 0, requests)
    assert one == three  # batch size and batch-mates do not change a sample's draw
    assert texts(3, 0, requests[::-1]) == three[::-1]
    assert texts(3, 1, requests) != three  # another seed, other samples
    greedy = HFBackend(str(tiny_model_dir), device="cpu", batch_size=3)
    assert [g.text for g in greedy.generate(requests)] != three  # it really sampled


def test_openai_sends_temperature_top_p_and_a_per_sample_seed() -> None:
    from mgpo.backends.openai import OpenAIBackend

    be = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", decoding=Sampling(1.0, 0.95, 5), check=False)
    a, b = (be.chat_body(r) for r in _requests(2))
    assert (a["temperature"], a["top_p"]) == (1.0, 0.95) and a["seed"] != b["seed"]
    assert be.chat_body(_requests(1)[0])["seed"] == a["seed"]
    assert "seed" not in OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", check=False).chat_body(_requests(1)[0])
