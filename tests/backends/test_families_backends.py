"""The model family outside the hf backend: recorded turns replayed in the family's frame (scripted), images sent
to a server at the family's frame (openai), and what vLLM is given (its pixel-limit keys, the frame unit)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from mgpo import families, imaging
from mgpo.backends import make_backend
from mgpo.engine import build_engine
from mgpo.infer import infer
from mgpo.protocol import ProtocolConfig

BOX_TURN = '```json\n[{"bbox_2d": [250, 250, 500, 500], "label": "sign"}]\n```'


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgpo.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def big_png(tmp_path: Path) -> Path:
    path = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000), (90, 120, 150)).save(path)
    return path


@pytest.fixture
def responses(tmp_path: Path) -> Path:
    path = tmp_path / "turns.jsonl"
    path.write_text(json.dumps({"turns": [BOX_TURN, "The sign says \\boxed{A}"]}) + "\n")
    return path


def test_scripted_replays_qwen3_vl_turns_in_its_frame(big_png: Path, responses: Path) -> None:
    result = run_cli("infer", str(big_png), "q", "-c", "a", "-c", "b", "--backend", "scripted", "--responses",
                     str(responses), "--model-family", "qwen3_vl", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    traj = json.loads(result.stdout)
    first = traj["turns"][0]
    assert traj["model_family"] == "qwen3_vl" and traj["protocol"]["coords"] == "normalized-1000"
    assert first["frame_size"] == [1152, 864]  # 4000x3000 -> pre-resize 1156x867 -> multiples of 32
    assert first["box_model"] == [250, 250, 500, 500] and first["box_original"] == [1000, 750, 2000, 1500]
    assert traj["answer"] == "A"


def test_scripted_reads_the_family_from_the_model_dir(big_png: Path, responses: Path, family_model_dirs) -> None:
    cfg = ProtocolConfig.paper()
    engine = build_engine("scripted", str(family_model_dirs["qwen3_vl"]), cfg, responses)
    traj = infer(engine, big_png, "q", ["a", "b"])
    assert traj.model_family == "qwen3_vl" and traj.turns[0].box_original == [1000, 750, 2000, 1500]
    assert traj.turns[0].output_tokens > 0  # the directory lends its tokenizer too
    # the same turns read as Qwen2.5-VL (frame pixels) are a different box
    default = infer(build_engine("scripted", None, cfg, responses), big_png, "q", ["a", "b"])
    assert default.model_family == "qwen2_5_vl" and default.turns[0].box_original == [871, 864, 1742, 1728]
    # --coords still wins over the family's convention
    forced = infer(build_engine("scripted", None, cfg.with_options(model_family="qwen3_vl", coords="resized-pixels"),
                                responses), big_png, "q", ["a", "b"])  # fmt: skip
    assert forced.turns[0].box_original == [868, 868, 1736, 1736] and forced.turns[0].frame_size == [1152, 864]


# ---------------------------------------------------------------------------------------------------------------
# openai: a server on 127.0.0.1 that serves "Qwen/Qwen3-VL-8B-Instruct" and records the images it is sent


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.sizes: list[tuple[int, int]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "Qwen/Qwen3-VL-8B-Instruct"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        last = body["messages"][-1]["content"]
        for part in last if isinstance(last, list) else []:
            if part["type"] == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                self.server.sizes.append(Image.open(io.BytesIO(data)).size)
        turn1 = len(body["messages"]) <= 2
        self._send(
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": BOX_TURN if turn1 else "\\boxed{B}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3},
            }
        )

    def _send(self, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    srv = Recorder()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_openai_sends_images_at_the_served_familys_frame(recorder: Recorder, big_png: Path) -> None:
    # no --model: the server's model name says Qwen3-VL, so the frame unit is 32 and boxes are 0-1000
    engine = build_engine("openai", None, ProtocolConfig.paper(), base_url=recorder.url)
    assert engine.backend.frame_unit == 32 and engine.config.model_family == "qwen3_vl"
    traj = infer(engine, big_png, "q", ["a", "b"])
    assert traj.error is None and traj.model_family == "qwen3_vl"
    assert traj.turns[0].box_original == [1000, 750, 2000, 1500]
    frames = [tuple(t.frame_size) for t in traj.turns]
    assert recorder.sizes == frames  # each turn's new image, at exactly the frame the boxes are read in
    assert all(w % 32 == 0 and h % 32 == 0 for w, h in recorder.sizes)
    # --model-family wins over the server's name
    forced = build_engine("openai", None, ProtocolConfig.paper(model_family="qwen2_5_vl"), base_url=recorder.url)
    assert forced.backend.frame_unit == 28 and forced.config.coords == "resized-pixels"


# ---------------------------------------------------------------------------------------------------------------
# vllm (not installable here): what the backend hands vllm.LLM, through a stand-in that records it


def test_vllm_gets_the_familys_pixel_keys_and_frame(family_model_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    class LLM:
        def __init__(self, **kwargs) -> None:
            seen.update(kwargs)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=dict))
    model = str(family_model_dirs["qwen3_vl"])
    cfg = families.for_model(ProtocolConfig.paper(), model)
    backend = make_backend("vllm", model, protocol=cfg)
    assert seen["mm_processor_kwargs"] == {"size": {"shortest_edge": 3136, "longest_edge": 12_845_056}}
    assert backend.frame_unit == 32
    image = Image.new("RGB", (1157, 867))
    assert backend._frame(image).size == imaging.model_frame(image.size, 3136, 12_845_056, 32) == (1152, 864)
    old = families.for_model(ProtocolConfig.paper(), str(family_model_dirs["qwen2_5_vl"]))
    make_backend("vllm", str(family_model_dirs["qwen2_5_vl"]), protocol=old)
    assert seen["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 12_845_056}  # as before
