"""Serving benchmark: mgpo's eval client against a served model, next to lmms-eval's own OpenAI client.

On one simulated continuous-batching server (bench/simserver.py, a separate process on 127.0.0.1) and the same docs
(JPEG files, each question tagged so the server draws the same seeded, long-tailed output lengths for a sample in
every row), it measures:

- (a) mgpo pipelined: the paper's two-turn protocol through ``Engine`` + the openai backend (per-sample pipelining,
  ``--concurrency`` in flight);
- (b) mgpo turn-synchronous: the same with the turn barrier (``Engine(pipelined=False)``, chunks of
  ``--concurrency``: today's engine at its best setting);
- (c) lmms-eval 0.7.3's ``openai`` chat model (``lmms_eval/models/chat/openai.py``: a thread pool with adaptive
  concurrency, capped at ``--concurrency``), run for real by its ``generate_until`` on the single-turn task (the
  direct prompt, the image file as the doc's visual);
- (c') mgpo's single-turn ``direct`` protocol through the pipelined client;
- (d) a per-sample sequential crop loop (one conversation at a time, as the peers' eval scripts run), on the first
  ``--sequential-samples`` docs.

Each row reports samples/s, the server's busy fraction (the share of the row's wall time it had sequences to run,
not idle waiting for the client), its capacity share (its capacity bound for the work the row gave it, every step
at full batch, over the wall time), its mean running batch, and then the target ratios. ``--real`` adds the same
rows against a real ``transformers serve`` of the tiny model (slow on CPU; no busy fraction there). ``--full-size``
runs a random-weight Qwen2.5-VL-7B config through ``transformers serve`` on a CUDA GPU and prints absolute figures
next to a roofline estimate; ``--roofline`` prints that estimate alone (a CPU dry run).

    python bench/serve.py                  # simulator rows, ~2-4 minutes on CPU, writes bench/serve_report.json
    python bench/serve.py --real           # + transformers serve of the tiny model, concurrency 8
    python bench/serve.py --roofline       # the 7B roofline estimate for the simulated workload (no GPU needed)
    python bench/serve.py --full-size      # + the 7B config on a local GPU server
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import httpx  # noqa: E402

from mgpo import protocol  # noqa: E402
from mgpo.backends.openai import OpenAIBackend  # noqa: E402
from mgpo.engine import Engine  # noqa: E402
from mgpo.protocol import ProtocolConfig  # noqa: E402
from mgpo.synthetic import demo_scene  # noqa: E402
from mgpo.types import Sample, Trajectory  # noqa: E402

TARGETS = {  # name: (threshold, higher is better)
    "busy_a_at_concurrency": (0.9, True),
    "busy_a_over_busy_c": (1.0, True),
    "capacity_share_a_over_c": (1.0, True),  # not an issue target: the same comparison by capacity share
    "a_over_b": (1.5, True),
    "c_prime_over_c": (1.0, True),
    "a_over_c_prime": (0.625, True),
    "a_over_d": (10.0, True),
}
CHOICES = ["red", "blue", "green", "yellow"]


@dataclass
class Row:
    key: str
    name: str
    samples: int
    wall: float
    errors: int = 0
    turns: float = 0.0
    crops: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall

    @property
    def busy(self) -> float | None:
        """Share of the wall time the server had sequences to run (not idle waiting for the client)."""
        return self.stats["busy_s"] / self.wall if self.stats else None

    @property
    def capacity(self) -> float | None:
        """Share of the server's capacity the row got: its capacity bound for this work over the wall time."""
        return self.stats["bound_s"] / self.wall if self.stats else None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "samples": self.samples, "wall_s": round(self.wall, 3),
               "samples_per_s": round(self.samples_per_s, 3), "errors": self.errors, "turns_per_sample": self.turns,
               "crops": self.crops}  # fmt: skip
        if self.stats:
            s = self.stats
            full = s["full_s"] / s["engine_s"] if s["engine_s"] else 0.0
            out.update(busy=round(self.busy or 0, 3), capacity_share=round(self.capacity or 0, 3),
                       all_slots_taken=round(full, 3), bound_samples_per_s=round(self.samples / s["bound_s"], 3),
                       mean_running=round(s["mean_running"], 2), max_running=s["max_running"],
                       server_requests=s["requests"], output_tokens=s["output_tokens"],
                       prefill_tokens=s["charged_tokens"])  # fmt: skip
        return out


# ---------------------------------------------------------------------------------------------------------------
# Servers


@contextlib.contextmanager
def simulator(args: argparse.Namespace, log: Path) -> Iterator[str]:
    """bench/simserver.py in its own process (its GIL is not the client's); its /v1 URL."""
    cmd = [sys.executable, str(HERE / "simserver.py"), "--port", "0", "--max-running", str(args.max_running),
           "--time-scale", str(args.time_scale), "--seed", str(args.seed)]  # fmt: skip
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"the simulator did not start: {line!r} {log.read_text()[-2000:]}")
        yield line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def transformers_server(model_dir: Path, device: str, log: Path, timeout: float = 600) -> Iterator[str]:
    """`transformers serve MODEL` on 127.0.0.1 (a port the OS picked); its /v1 URL once /health answers."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "transformers"
    cmd = [str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", device]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"transformers serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"transformers serve not ready after {timeout:.0f}s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def server_stats(url: str, reset: bool = False) -> dict[str, Any]:
    if reset:
        httpx.post(f"{url}/reset", timeout=10).raise_for_status()
        return {}
    return httpx.get(f"{url}/stats", timeout=10).json()


# ---------------------------------------------------------------------------------------------------------------
# Rows


def make_docs(n: int, size: tuple[int, int], folder: Path) -> list[Sample]:
    """n JPEG files (like V*), each question tagged ``[item i]``: the simulator keys a sample's lengths on it."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        path = folder / f"{i:04d}.jpg"
        if not path.exists():
            image, _ = demo_scene(seed=i, size=size)
            image.save(path, quality=90)
        samples.append(Sample(str(path), f"What is the colour of the cup? [item {i}]", CHOICES, "A", id=f"s{i}"))
    return samples


def summarise(key: str, name: str, trajs: list[Trajectory], wall: float, stats: dict[str, Any]) -> Row:
    turns = round(statistics.mean(len(t.turns) for t in trajs), 2) if trajs else 0.0
    crops = sum(1 for t in trajs for turn in t.turns if turn.box_original is not None)
    return Row(key, name, len(trajs), wall, sum(t.error is not None for t in trajs), turns, crops, stats)


def run_mgpo(key: str, name: str, url: str, model: str | None, cfg: ProtocolConfig, samples: list[Sample],
             concurrency: int, pipelined: bool, sim: bool) -> Row:  # fmt: skip
    backend = OpenAIBackend(model, base_url=url, concurrency=concurrency, max_retries=0, timeout=1800)
    engine = Engine(backend, cfg, pipelined=pipelined)
    if sim:
        server_stats(url, reset=True)
    start = time.perf_counter()
    trajs = engine.run(samples, batch_size=concurrency)
    wall = time.perf_counter() - start
    backend.close()
    return summarise(key, name, trajs, wall, server_stats(url) if sim else {})


def run_peer(url: str, model: str, samples: list[Sample], concurrency: int, max_tokens: int, sim: bool) -> Row:
    """lmms-eval's OpenAI-compatible chat model, its generate_until on single-turn requests of the direct prompt."""
    from lmms_eval.api.instance import Instance
    from lmms_eval.models import get_model

    logging.getLogger("httpx").setLevel(logging.WARNING)
    cls = get_model("openai")
    peer = cls(model_version=model, base_url=url, api_key="EMPTY", num_concurrent=concurrency,
               adaptive_concurrency=True, adaptive_max_concurrency=concurrency, max_retries=1,
               timeout=1800)  # fmt: skip
    docs = [{"image": s.image, "question": s.question, "choices": s.choices} for s in samples]
    peer.task_dict = {"bench": {"test": docs}}

    def doc_to_messages(doc: dict) -> list[dict]:
        text = protocol.direct_text(doc["question"], doc["choices"])  # the prompt mgpo's direct protocol sends
        return [{"role": "user", "content": [{"type": "image", "url": doc["image"]}, {"type": "text", "text": text}]}]

    gen = {"max_new_tokens": max_tokens, "temperature": 0.0}
    requests = [Instance("generate_until", ("", doc_to_messages, gen, i, "bench", "test"), i,
                         {"task": "bench", "doc_id": i, "repeats": 1}) for i in range(len(docs))]  # fmt: skip
    if sim:
        server_stats(url, reset=True)
    start = time.perf_counter()
    out = peer.generate_until(requests)
    wall = time.perf_counter() - start
    errors = sum(not r.text or r.text.startswith("[LMMS_EVAL_REQUEST_FAILED") for r in out)
    row = Row("c", f"(c) lmms-eval openai chat model, single-turn (<= {concurrency})", len(docs), wall, errors, 1.0)
    row.stats = server_stats(url) if sim else {}
    return row


def run_rows(url: str, model: str | None, samples: list[Sample], args: argparse.Namespace, cfgs: dict,
             sim: bool, label: str) -> dict[str, Row]:  # fmt: skip
    c = args.concurrency
    seq = samples[: args.sequential_samples]
    rows: dict[str, Row] = {}
    served = model or OpenAIBackend(None, base_url=url).model
    plan = [
        ("a", f"(a) mgpo pipelined, two-turn ({c} in flight)", cfgs["two"], samples, c, True),
        ("b", f"(b) mgpo turn-synchronous, two-turn (chunks of {c})", cfgs["two"], samples, c, False),
        ("c_prime", f"(c') mgpo direct, single-turn, pipelined ({c})", cfgs["one"], samples, c, True),
        ("d", f"(d) sequential crop loop, one conversation at a time ({len(seq)} docs)", cfgs["two"], seq, 1, False),
    ]
    for key, name, cfg, docs, width, pipelined in plan[:3]:
        print(f"[{label}] {name} ...", flush=True)
        rows[key] = run_mgpo(key, name, url, served, cfg, docs, width, pipelined, sim)
    print(f"[{label}] (c) lmms-eval openai chat model ...", flush=True)
    rows["c"] = run_peer(url, served, samples, c, cfgs["one"].max_new_tokens or 2048, sim)
    key, name, cfg, docs, width, pipelined = plan[3]
    print(f"[{label}] {name} ...", flush=True)
    rows[key] = run_mgpo(key, name, url, served, cfg, docs, width, pipelined, sim)
    return {k: rows[k] for k in ("a", "b", "c", "c_prime", "d")}


def ratios(rows: dict[str, Row]) -> dict[str, float]:
    sps = {k: r.samples_per_s for k, r in rows.items()}
    out = {"a_over_b": sps["a"] / sps["b"], "c_prime_over_c": sps["c_prime"] / sps["c"],
           "a_over_c_prime": sps["a"] / sps["c_prime"], "a_over_d": sps["a"] / sps["d"]}  # fmt: skip
    if rows["a"].busy is not None and rows["c"].busy:
        out["busy_a_at_concurrency"] = rows["a"].busy
        out["busy_a_over_busy_c"] = rows["a"].busy / rows["c"].busy
        out["capacity_share_a_over_c"] = (rows["a"].capacity or 0) / (rows["c"].capacity or 1)
    return {k: round(v, 3) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------------
# Roofline (Qwen2.5-VL-7B)

GPUS = {  # HBM bandwidth (bytes/s), dense bf16 peak (FLOP/s)
    "H200": (4.8e12, 989e12),
    "H100": (3.35e12, 989e12),
    "A100": (2.0e12, 312e12),
    "L40S": (0.864e12, 362e12),
}
LM = {"hidden": 3584, "intermediate": 18944, "layers": 28, "heads": 28, "kv_heads": 4, "vocab": 152064}
VIT = {"hidden": 1280, "intermediate": 3420, "depth": 32, "merger_out": 3584}


def qwen25vl_7b_params() -> tuple[float, float]:
    """(language-model parameters, vision-tower parameters) of Qwen2.5-VL-7B, from its config."""
    h, i, layers, kv = LM["hidden"], LM["intermediate"], LM["layers"], LM["kv_heads"]
    head = h // LM["heads"]
    attn = h * h * 2 + 2 * h * kv * head  # q, o and the grouped k, v projections
    lm = layers * (attn + 3 * h * i) + 2 * LM["vocab"] * h  # SwiGLU MLP; untied embeddings and head
    vh, vi = VIT["hidden"], VIT["intermediate"]
    vit = VIT["depth"] * (4 * vh * vh + 3 * vh * vi) + (4 * vh) * (4 * vh) + 4 * vh * VIT["merger_out"]
    return float(lm), float(vit)


def roofline(gpu: str, per_sample: dict[str, float], batch: int, bandwidth: float | None = None,
             peak: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A lower bound on time per sample: decode memory-bound (the bf16 weights read once per step, shared by the
    batch; KV reads ignored), prefill compute-bound (2 FLOPs per parameter per token: the language model over the
    prompt tokens, the vision tower over 4 patches per visual token) at peak."""
    bw, flops = GPUS.get(gpu, GPUS["H100"])
    bw, flops = bandwidth or bw, peak or flops
    lm, vit = qwen25vl_7b_params()
    step = 2 * lm / bw  # seconds per decode step
    prefill = (2 * lm * per_sample["prefill_tokens"] + 2 * vit * 4 * per_sample["visual_tokens"]) / flops
    decode = per_sample["output_tokens"] * step / batch
    return {"gpu": gpu, "bandwidth_TBps": bw / 1e12, "peak_TFLOPs": flops / 1e12, "lm_params_B": round(lm / 1e9, 2),
            "vision_params_B": round(vit / 1e9, 3), "decode_step_ms": round(1000 * step, 2), "batch": batch,
            "prefill_ms_per_sample": round(1000 * prefill, 2), "decode_ms_per_sample": round(1000 * decode, 2),
            "samples_per_s_bound": round(1 / (prefill + decode), 2), "per_sample": per_sample}  # fmt: skip


def workload(row: Row) -> dict[str, float]:
    """Tokens per sample the simulator counted for a row: what the roofline is computed for."""
    s = row.stats
    n = max(1, row.samples)
    # visual share of the prompt: the simulator charges visual + text; the bench's text is ~90 tokens a turn
    visual = max(0.0, s["charged_tokens"] / n - 90 * row.turns)
    return {"prefill_tokens": round(s["charged_tokens"] / n, 1), "visual_tokens": round(visual, 1),
            "output_tokens": round(s["output_tokens"] / n, 1)}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------


def print_rows(title: str, rows: dict[str, dict[str, Any]], rat: dict[str, float]) -> None:
    print(f"\n== {title} ==")
    print(f"{'row':<62}{'samples/s':>10}{'busy':>7}{'capac.':>7}{'bound/s':>9}{'running':>9}{'turns':>7}{'err':>5}")
    for d in rows.values():
        busy = f"{d['busy']:.2f}" if "busy" in d else "-"
        cap = f"{d['capacity_share']:.2f}" if "capacity_share" in d else "-"
        bound = f"{d['bound_samples_per_s']:.2f}" if "bound_samples_per_s" in d else "-"
        running = f"{d['mean_running']:.1f}" if "mean_running" in d else "-"
        print(
            f"{d['name']:<62}{d['samples_per_s']:>10.2f}{busy:>7}{cap:>7}{bound:>9}{running:>9}{d['turns_per_sample']:>7}"
            f"{d['errors']:>5}"
        )
    print(f"{'ratio':<28}{'measured':>10}{'target':>10}{'met':>6}")
    for name, value in rat.items():
        threshold, higher = TARGETS[name]
        met = value >= threshold if higher else value <= threshold
        print(f"{name:<28}{value:>10.3f}{('>=' if higher else '<=') + str(threshold):>10}{'yes' if met else 'NO':>6}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=256, help="docs per row (a, b, c, c')")
    ap.add_argument("--sequential-samples", type=int, default=16, help="docs for row (d)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-running", type=int, default=None, help="simulator's running cap (default: concurrency)")
    ap.add_argument("--time-scale", type=float, default=2.0, help="simulated time x this (CPU clients keep up)")
    ap.add_argument("--size", default="1120x840", help="image size; <= the protocol's max_pixels, so every client "
                    "sends the same frame (V* images are larger; the protocol pre-resizes them)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="also against `transformers serve` of the tiny model")
    ap.add_argument("--real-samples", type=int, default=16)
    ap.add_argument("--real-concurrency", type=int, default=8)
    ap.add_argument("--skip-sim", action="store_true", help="only the --real / --full-size rows")
    ap.add_argument("--full-size", action="store_true", help="a random-weight 7B config served on a CUDA GPU")
    ap.add_argument("--roofline", action="store_true", help="print the 7B roofline for the simulated workload")
    ap.add_argument("--gpu", default=None, help="roofline GPU: " + ", ".join(GPUS) + " (default: detected, or H100)")
    ap.add_argument("--out", default=str(HERE / "serve_report.json"))
    args = ap.parse_args(argv)
    args.max_running = args.max_running or args.concurrency
    size = tuple(int(v) for v in args.size.split("x"))
    started = time.perf_counter()
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_start": list(os.getloadavg())}
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    report: dict[str, Any] = {"machine": machine, "settings": settings, "blocks": []}
    two = ProtocolConfig.paper()
    one = ProtocolConfig.direct()
    with tempfile.TemporaryDirectory() as tmp:
        docs_dir = Path(tmp) / "docs"
        sim_rows: dict[str, Row] | None = None
        if not args.skip_sim:
            samples = make_docs(args.samples, size, docs_dir)  # type: ignore[arg-type]
            with simulator(args, Path(tmp) / "sim.log") as url:
                sim_rows = run_rows(url, None, samples, args, {"two": two, "one": one}, True, "simulator")
            rat = ratios(sim_rows)
            report["blocks"].append({"label": "simulated continuous-batching server", "url": "loopback",
                                     "rows": {k: r.to_dict() for k, r in sim_rows.items()}, "ratios": rat})  # fmt: skip
        if args.real:
            real_block(args, Path(tmp), report)
        if args.roofline or args.full_size:
            gpu = args.gpu or detected_gpu() or "H100"
            per = workload(sim_rows["a"]) if sim_rows else {"prefill_tokens": 2600, "visual_tokens": 2400,
                                                            "output_tokens": 200}  # fmt: skip
            report["roofline"] = roofline(gpu, per, args.concurrency)
        if args.full_size:
            full_block(args, Path(tmp), report)
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["total_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for block in report["blocks"]:
        print_rows(block["label"], block["rows"], block["ratios"])
    if "roofline" in report:
        print_roofline(report["roofline"], report.get("full_size"))
    print(f"\nreport: {args.out}  (total {report['total_s']:.0f} s)")
    return 0


def real_block(args: argparse.Namespace, tmp: Path, report: dict[str, Any]) -> None:
    """The same rows against `transformers serve` of the tiny model on CPU, at --real-concurrency."""
    from mgpo.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp / "tiny")
    # small images and budgets: the tiny model's vision tower on CPU; every client sends the same 448x448 frame
    pixels = {"min_pixels": 3136, "max_pixels": 200704, "crop_min_pixels": 3136, "crop_max_pixels": 200704,
              "max_new_tokens": 16}  # fmt: skip
    cfgs = {"two": ProtocolConfig.paper(**pixels), "one": ProtocolConfig.direct(**pixels)}
    samples = make_docs(args.real_samples, (448, 448), tmp / "real_docs")
    sub = argparse.Namespace(**{**vars(args), "concurrency": args.real_concurrency,
                                "sequential_samples": min(args.sequential_samples, args.real_samples)})  # fmt: skip
    with transformers_server(model_dir, "cpu", tmp / "serve.log") as url:
        rows = run_rows(url, str(model_dir), samples, sub, cfgs, False, "transformers serve")
    report["blocks"].append({"label": f"transformers serve, tiny model, CPU (concurrency {args.real_concurrency})",
                             "rows": {k: r.to_dict() for k, r in rows.items()}, "ratios": ratios(rows)})  # fmt: skip


def detected_gpu() -> str | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        name = torch.cuda.get_device_name(0)
    except Exception:
        return None
    return next((g for g in GPUS if g in name), name)


def full_block(args: argparse.Namespace, tmp: Path, report: dict[str, Any]) -> None:
    """The 7B config with random weights, served by `transformers serve` on the GPU; rows (a) and (c') measured."""
    import torch

    if not torch.cuda.is_available():
        print("--full-size needs a CUDA GPU; printing the roofline estimate only", flush=True)
        report["full_size"] = {"skipped": "no CUDA GPU"}
        return
    sys.path.insert(0, str(HERE))
    from run import build_full_size  # the same random-weight 7B config as bench/run.py

    model_dir = build_full_size(tmp / "full7b")
    samples = make_docs(min(args.samples, 64), (1120, 840), tmp / "full_docs")
    cfgs = {"two": ProtocolConfig.paper(max_new_tokens=256), "one": ProtocolConfig.direct(max_new_tokens=256)}
    c = args.concurrency
    with transformers_server(model_dir, "cuda", tmp / "serve7b.log", timeout=1200) as url:
        a = run_mgpo("a", f"(a) mgpo pipelined, two-turn ({c})", url, str(model_dir), cfgs["two"], samples, c, True,
                     False)  # fmt: skip
        cp = run_mgpo("c_prime", f"(c') mgpo direct, pipelined ({c})", url, str(model_dir), cfgs["one"], samples, c,
                      True, False)  # fmt: skip
    report["full_size"] = {"rows": {"a": a.to_dict(), "c_prime": cp.to_dict()}, "gpu": torch.cuda.get_device_name(0)}


def print_roofline(r: dict[str, Any], full: dict[str, Any] | None) -> None:
    per = r["per_sample"]
    print(f"\n== roofline: Qwen2.5-VL-7B on {r['gpu']} ({r['bandwidth_TBps']} TB/s, {r['peak_TFLOPs']:.0f} TFLOP/s) ==")
    print(f"parameters: {r['lm_params_B']} B language model + {r['vision_params_B']} B vision tower (bf16)")
    print(f"workload per sample: {per['prefill_tokens']} prefill tokens ({per['visual_tokens']} visual), "
          f"{per['output_tokens']} output tokens")  # fmt: skip
    print(
        f"decode step >= {r['decode_step_ms']} ms (weights / bandwidth), batch {r['batch']}: "
        f"{r['decode_ms_per_sample']} ms/sample; prefill >= {r['prefill_ms_per_sample']} ms/sample (FLOPs / peak)"
    )
    print(f"bound: {r['samples_per_s_bound']} samples/s")
    if full and "rows" in full:
        for row in full["rows"].values():
            share = row["samples_per_s"] / r["samples_per_s_bound"]
            print(f"measured {row['name']}: {row['samples_per_s']:.2f} samples/s ({share:.0%} of the bound)")
    elif full:
        print(f"full-size run: {full.get('skipped')}")


if __name__ == "__main__":
    sys.exit(main())
