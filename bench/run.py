"""Throughput benchmark: mgpo two-turn vs mgpo single-turn vs lmms-eval's stock Qwen2.5-VL (the peer).

All three run side by side in this one process, on the same synthetic high-resolution images, with the same model
weights, dtype and device, and with fixed output lengths: a logits processor forces every generated token (the model
still runs its full forward pass for each one), so every answer is exactly --answer-tokens long and mgpo's grounding
turn writes one valid box (its natural length, then end-of-turn) which the engine crops. The peer is lmms-eval's real
``qwen2_5_vl`` chat model class, instantiated in-process with the same model directory as ``pretrained``; its
weights are cast to the benchmark dtype (it hard-codes bfloat16, which would be slower on CPU and unfair).

Also measured: engine overhead (wall time of Engine.run outside backend.generate) per sample on 4K images read from
PNG files. Ratios, not timings, are the results; targets: two-turn <= 1.6x single-turn time, mgpo two-turn >= 3x the
peer's samples/s, engine overhead <= 5% of wall time.

    python bench/run.py --quick            # tiny model on CPU, ~2-5 minutes, writes bench/report.json
    python bench/run.py --full-size        # + a random-weight Qwen2.5-VL-7B config (needs a CUDA GPU)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from mgpo import imaging, protocol
from mgpo.backends.base import Generation, Request
from mgpo.backends.hf import HFBackend
from mgpo.engine import Engine
from mgpo.protocol import ProtocolConfig
from mgpo.synthetic import demo_scene
from mgpo.types import Sample

TARGETS = {
    "two_turn_over_single_turn_time": 1.6,
    "two_turn_over_single_turn_time_without_vision_cache": 1.6,
    "two_turn_over_peer_samples_per_s": 3.0,
    "engine_overhead_4k_jpeg": 0.05,
    "engine_overhead_4k_png": 0.05,
}
QUESTION = "What is the colour of the cup?"
CHOICES = ["red", "blue", "green", "yellow"]


# ---------------------------------------------------------------------------------------------------------------
# Fixed output lengths


class ForceTokens(LogitsProcessor):
    """Makes generation emit exactly ``targets`` (then keeps emitting the last one): fixed, comparable lengths."""

    def __init__(self, targets: list[int], prompt_len: int):
        self.targets = targets
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.targets[min(step, len(self.targets) - 1)]] = 0.0
        return forced


@dataclass
class Forcing:
    """What each turn writes: the box turn (prompt has one image, two-turn mode) or a fixed-length answer."""

    tokenizer: Any
    answer_tokens: int
    box_text: str
    vision_start: int
    two_turn: bool = False

    def targets(self, input_ids: torch.Tensor) -> list[int]:
        images = int((input_ids[0] == self.vision_start).sum())
        if self.two_turn and images == 1:
            ids = self.tokenizer(self.box_text, add_special_tokens=False)["input_ids"]
            return [*ids, self.tokenizer.convert_tokens_to_ids("<|im_end|>")]
        filler = self.tokenizer(" \\boxed{A}" + " x" * self.answer_tokens, add_special_tokens=False)["input_ids"]
        return filler[: self.answer_tokens]

    def install(self, model) -> None:
        """Wrap ``model.generate`` so each call gets a processor that knows its prompt length."""
        if getattr(model, "_bench_original_generate", None) is None:
            model._bench_original_generate = model.generate
        original = model._bench_original_generate

        def generate(*args, **kwargs):
            ids = kwargs["input_ids"]
            procs = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
            procs.append(ForceTokens(self.targets(ids), ids.shape[1]))
            return original(*args, logits_processor=procs, **kwargs)

        model.generate = generate


def box_text_for(size: tuple[int, int], target_box: list[int], cfg: ProtocolConfig) -> str:
    """A grounding answer naming a region around the target, in turn 1's model frame (what Qwen2.5-VL emits)."""
    view = imaging.pre_resize_size(size, cfg.min_pixels, cfg.max_pixels)
    fw, fh = imaging.model_frame(view, cfg.processor_min_pixels, cfg.processor_max_pixels)
    sx, sy = fw / size[0], fh / size[1]
    x1, y1, x2, y2 = target_box
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.5
    box = [round(max(0, (cx - half) * sx)), round(max(0, (cy - half) * sy)),
           round(min(fw, (cx + half) * sx)), round(min(fh, (cy + half) * sy))]  # fmt: skip
    return '```json\n[{"bbox_2d": ' + json.dumps(box) + ', "label": "cup"}]\n```'


# ---------------------------------------------------------------------------------------------------------------
# Measured runs


class TimedBackend:
    """Counts the wall time spent inside backend.generate, so the engine's own time can be told apart."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.by_turn: dict[int, float] = {}

    def generate(self, requests: list[Request]) -> list[Generation]:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return self.backend.generate(requests)
        finally:
            took = time.perf_counter() - start
            self.seconds += took
            self.cpu_seconds += time.process_time() - cpu
            turn = requests[0].turn if requests else 0
            self.by_turn[turn] = self.by_turn.get(turn, 0.0) + took

    def default_max_new_tokens(self) -> int:
        return self.backend.default_max_new_tokens()


@dataclass
class Result:
    name: str
    samples: int
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # process CPU seconds: robust to other load on a shared CPU
    output_tokens: int = 0
    model_seconds: list[float] = field(default_factory=list)
    errors: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> int:
        return self.walls.index(min(self.walls))

    @property
    def cpu(self) -> float:
        return min(self.cpus)

    @property
    def wall(self) -> float:
        return min(self.walls)  # best of the repeats: the least disturbed by other load on the machine

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "samples": self.samples,
            "wall_s_best": round(self.wall, 3),
            "wall_s_all": [round(w, 3) for w in self.walls],
            "wall_s_median": round(statistics.median(self.walls), 3),
            "cpu_s_best": round(self.cpu, 3),
            "cpu_s_all": [round(c, 3) for c in self.cpus],
            "samples_per_s": round(self.samples / self.wall, 4),
            "output_tokens": self.output_tokens,
            "tokens_per_s": round(self.output_tokens / self.wall, 2),
            "errors": self.errors,
            **(
                {"engine_s_outside_backend": round(self.walls[self.best] - self.model_seconds[self.best], 3)}
                if self.model_seconds
                else {}
            ),
            **self.notes,
        }


def run_mgpo(backend: HFBackend, forcing: Forcing, cfg: ProtocolConfig, samples: list[Sample], result: Result):
    forcing.two_turn = not cfg.single_turn
    forcing.install(backend.model)
    timed = TimedBackend(backend)
    start, cpu = time.perf_counter(), time.process_time()
    trajs = Engine(timed, cfg).run(samples)
    wall = time.perf_counter() - start
    result.walls.append(wall)
    result.cpus.append(time.process_time() - cpu)
    result.model_seconds.append(timed.seconds)
    result.output_tokens = sum(t.output_tokens for tr in trajs for t in tr.turns)
    result.errors = sum(tr.error is not None for tr in trajs)
    turns = [len(tr.turns) for tr in trajs]
    crops = sum(1 for tr in trajs for t in tr.turns if t.box_original is not None)
    result.notes.update(turns_per_sample=round(sum(turns) / len(turns), 2), crops=crops)
    result.notes.setdefault("backend_s_by_turn_all", []).append({t + 1: round(v, 3) for t, v in timed.by_turn.items()})
    return trajs


def make_peer(model_dir: str, device: str, dtype: torch.dtype, cfg: ProtocolConfig, batch_size: int):
    """lmms-eval's stock ``qwen2_5_vl`` (chat) model class, as `--model qwen2_5_vl --model_args pretrained=DIR`."""
    from lmms_eval.models import get_model

    cls = get_model("qwen2_5_vl")
    peer = cls(pretrained=model_dir, device=device, device_map=device, batch_size=batch_size,
               min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)  # fmt: skip
    peer._model.to(dtype)  # it loads bfloat16 unconditionally; the comparison uses one dtype for all
    return peer


def run_peer(peer, forcing: Forcing, samples: list[Sample], answer_tokens: int, result: Result) -> None:
    from lmms_eval.api.instance import Instance

    forcing.two_turn = False
    forcing.install(peer.model)
    docs = [{"image": s.image, "question": s.question, "choices": s.choices} for s in samples]
    peer.task_dict = {"bench": {"test": docs}}

    def doc_to_messages(doc: dict) -> list[dict]:
        text = protocol.direct_text(doc["question"], doc["choices"])  # the same prompt mgpo's single turn uses
        return [{"role": "user", "content": [{"type": "image", "url": doc["image"]}, {"type": "text", "text": text}]}]

    gen_kwargs = {"max_new_tokens": answer_tokens, "temperature": 0.0}
    requests = [
        Instance(
            "generate_until",
            ("", doc_to_messages, gen_kwargs, i, "bench", "test"),
            i,
            {"task": "bench", "doc_id": i, "repeats": 1},
        )
        for i in range(len(docs))
    ]
    start, cpu = time.perf_counter(), time.process_time()
    out = peer.generate_until(requests)
    result.walls.append(time.perf_counter() - start)
    result.cpus.append(time.process_time() - cpu)
    result.output_tokens = sum(r.token_counts.output_tokens for r in out)
    result.errors = sum(not r.text for r in out)


# ---------------------------------------------------------------------------------------------------------------
# Data and models


def make_samples(n: int, size: tuple[int, int]) -> tuple[list[Sample], list[list[int]]]:
    samples, boxes = [], []
    for i in range(n):
        image, target = demo_scene(seed=i, size=size)
        samples.append(Sample(image, QUESTION, CHOICES, "A", id=f"s{i}"))
        boxes.append(target.box)
    return samples, boxes


def build_full_size(out_dir: Path) -> Path:
    """A Qwen2.5-VL-7B-sized model with random weights (bfloat16) and the tiny tokenizer: real cost, no download."""
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from mgpo.tiny import SPECIAL_TOKENS, build_processor

    processor = build_processor()
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1_000_000.0},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"], "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584,
            "fullatt_block_indexes": [7, 15, 23, 31], "window_size": 112, "patch_size": 14,
            "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"], do_sample=False
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    del model
    torch.cuda.empty_cache()
    return out_dir


# ---------------------------------------------------------------------------------------------------------------
# The benchmark


def bench_model(label: str, model_dir: str, args: argparse.Namespace, device: str, dtype_name: str) -> dict:
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    size = tuple(int(v) for v in args.size.split("x"))
    tokens = args.answer_tokens
    two = ProtocolConfig.paper(max_new_tokens=tokens)
    one = ProtocolConfig.direct(max_new_tokens=tokens)
    print(f"[{label}] building {args.samples} samples of {size[0]}x{size[1]} ...", flush=True)
    samples, boxes = make_samples(args.samples, size)
    warm = samples[:1]

    backend = HFBackend(model_dir, device=device, dtype=dtype_name, batch_size=args.batch_size)
    tok = backend.processor.tokenizer
    box = box_text_for(size, boxes[0], two)  # all samples share the size; one box text in turn-1 frame pixels
    forcing = Forcing(tok, tokens, box, tok.convert_tokens_to_ids("<|vision_start|>"))
    results = {
        "two_turn": Result("mgpo two-turn (hf)", len(samples)),
        "two_turn_no_cache": Result("  same, vision cache off", len(samples)),
        "single_turn": Result("mgpo single-turn (hf)", len(samples)),
        "peer": Result(f"lmms-eval qwen2_5_vl (batch {args.peer_batch_size})", len(samples)),
    }
    peer = None
    if not args.skip_peer:
        peer = make_peer(model_dir, device, dtype, one, args.peer_batch_size)
        run_peer(peer, forcing, warm, tokens, Result("warm", 1))
    run_mgpo(backend, forcing, two, warm, Result("warm", 1))  # warm-up: first calls pay one-time costs
    run_mgpo(backend, forcing, one, warm, Result("warm", 1))
    for r in range(args.repeats):  # interleaved, so a burst of load on a shared machine hits all three alike
        print(f"[{label}] round {r + 1}/{args.repeats}", flush=True)
        fresh = [Sample(s.image.copy(), s.question, s.choices, s.ground_truth, id=s.id) for s in samples]
        backend.stats.update(dict.fromkeys(backend.stats, 0))
        run_mgpo(backend, forcing, two, fresh, results["two_turn"])
        results["two_turn"].notes["hf_stats"] = {k: round(v, 3) for k, v in backend.stats.items()}
        if not args.skip_ablation:  # the same run without the vision cache: what the cache is worth
            budget, backend.vision_cache.budget = backend.vision_cache.budget, 0
            fresh = [Sample(s.image.copy(), s.question, s.choices, s.ground_truth, id=s.id) for s in samples]
            backend.stats.update(dict.fromkeys(backend.stats, 0))
            run_mgpo(backend, forcing, two, fresh, results["two_turn_no_cache"])
            results["two_turn_no_cache"].notes["hf_stats"] = {k: round(v, 3) for k, v in backend.stats.items()}
            backend.vision_cache.budget = budget
        fresh = [Sample(s.image.copy(), s.question, s.choices, s.ground_truth, id=s.id) for s in samples]
        backend.stats.update(dict.fromkeys(backend.stats, 0))
        run_mgpo(backend, forcing, one, fresh, results["single_turn"])
        results["single_turn"].notes["hf_stats"] = {k: round(v, 3) for k, v in backend.stats.items()}
        if peer is not None:
            run_peer(peer, forcing, samples, tokens, results["peer"])
    out = {k: v.row() for k, v in results.items() if v.walls}
    two_r, one_r = results["two_turn"], results["single_turn"]
    ratios = {"two_turn_over_single_turn_time": round(two_r.wall / one_r.wall, 3)}
    cpu_ratios = {"two_turn_over_single_turn_time": round(two_r.cpu / one_r.cpu, 3)}
    if results["two_turn_no_cache"].walls:
        no_cache = results["two_turn_no_cache"]
        ratios["two_turn_over_single_turn_time_without_vision_cache"] = round(no_cache.wall / one_r.wall, 3)
        cpu_ratios["two_turn_over_single_turn_time_without_vision_cache"] = round(no_cache.cpu / one_r.cpu, 3)
    if peer is not None:
        ratios["two_turn_over_peer_samples_per_s"] = round(results["peer"].wall / two_r.wall, 3)
        cpu_ratios["two_turn_over_peer_samples_per_s"] = round(results["peer"].cpu / two_r.cpu, 3)
    del peer
    overhead = {fmt: engine_overhead(backend, forcing, two, args, label, fmt) for fmt in ("jpeg", "png")}
    for fmt, o in overhead.items():
        ratios[f"engine_overhead_4k_{fmt}"] = o["overhead_fraction"]
        cpu_ratios[f"engine_overhead_4k_{fmt}"] = o["overhead_fraction_cpu"]
    return {"label": label, "device": device, "dtype": dtype_name, "runs": out, "ratios": ratios,
            "ratios_cpu_time": cpu_ratios, "overhead": overhead}  # fmt: skip


def engine_overhead(backend: HFBackend, forcing: Forcing, cfg: ProtocolConfig, args, label: str, fmt: str) -> dict:
    """Engine.run time outside backend.generate, per sample, on 4K images read from files (JPEG as in V* and
    MME-RealWorld, or PNG, slower to decode)."""
    size = (3840, 2160)
    print(f"[{label}] engine overhead on {args.overhead_samples} 4K {fmt.upper()} files ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.overhead_samples):
            image, _ = demo_scene(seed=100 + i, size=size)
            path = Path(tmp) / f"4k_{i}.{fmt}"
            image.save(path, quality=95) if fmt == "jpeg" else image.save(path, compress_level=1)
            paths.append(path)
        forcing.box_text = box_text_for(size, [1800, 1000, 1880, 1080], cfg)
        forcing.two_turn = True
        forcing.install(backend.model)
        timed = TimedBackend(backend)
        samples = [Sample(str(p), QUESTION, CHOICES, "A", id=p.stem) for p in paths]
        start, cpu = time.perf_counter(), time.process_time()
        trajs = Engine(timed, cfg).run(samples)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    engine_s, engine_cpu = wall - timed.seconds, cpu - timed.cpu_seconds
    return {
        "format": fmt,
        "image_size": list(size),
        "samples": len(samples),
        "errors": sum(t.error is not None for t in trajs),
        "wall_s": round(wall, 3),
        "inside_backend_s": round(timed.seconds, 3),
        "engine_s_per_sample": round(engine_s / len(samples), 4),
        "overhead_fraction": round(engine_s / wall, 4),
        "cpu_s": round(cpu, 3),
        "engine_cpu_s_per_sample": round(engine_cpu / len(samples), 4),
        "overhead_fraction_cpu": round(engine_cpu / cpu, 4),
    }


def print_table(report: dict) -> None:
    for block in report["models"]:
        print(f"\n== {block['label']} ({block['device']}, {block['dtype']}) ==")
        print(f"{'run':<34}{'samples/s':>11}{'tokens/s':>11}{'wall s':>9}{'cpu s':>9}{'errors':>8}")
        for row in block["runs"].values():
            print(f"{row['name']:<34}{row['samples_per_s']:>11.3f}{row['tokens_per_s']:>11.1f}"
                  f"{row['wall_s_best']:>9.2f}{row['cpu_s_best']:>9.2f}{row['errors']:>8}")  # fmt: skip
        for o in block["overhead"].values():
            print(f"engine overhead, {o['samples']} 4K {o['format'].upper()}: {1000 * o['engine_s_per_sample']:.0f} "
                  f"ms/sample wall ({100 * o['overhead_fraction']:.1f}%), {1000 * o['engine_cpu_s_per_sample']:.0f} "
                  f"ms/sample CPU ({100 * o['overhead_fraction_cpu']:.1f}%)")  # fmt: skip
        print(f"{'ratio':<52}{'by wall':>9}{'by CPU':>9}{'target':>9}{'met (wall/CPU)':>16}")
        for name, value in block["ratios"].items():
            cpu_value = block["ratios_cpu_time"][name]
            target = TARGETS[name]
            higher = name == "two_turn_over_peer_samples_per_s"

            def met(v: float, higher: bool = higher, target: float = target) -> str:
                return "yes" if (v >= target if higher else v <= target) else "NO"

            sign = ">=" if higher else "<="
            print(f"{name:<52}{value:>9.3f}{cpu_value:>9.3f}{sign + str(target):>9}"
                  f"{met(value) + '/' + met(cpu_value):>16}")  # fmt: skip
    print(f"\nreport: {report['path']}  (total {report['total_s']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run for CPU: 8 samples, 5 repeats")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--size", default="2048x1536", help="input image size (V* images average about 2246x1582)")
    ap.add_argument("--answer-tokens", type=int, default=64, help="fixed length of every answer turn")
    ap.add_argument("--batch-size", type=int, default=8, help="mgpo hf backend batch size")
    ap.add_argument("--peer-batch-size", type=int, default=1, help="lmms-eval's default is 1")
    ap.add_argument("--overhead-samples", type=int, default=None)
    ap.add_argument("--model", default=None, help="model directory (default: build the tiny model)")
    ap.add_argument("--full-size", action="store_true", help="also run a random-weight 7B config (CUDA only)")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--skip-ablation", action="store_true", help="skip the two-turn run without the vision cache")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: CPU seconds stay meaningful)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "report.json"))
    args = ap.parse_args(argv)
    args.samples = args.samples or (8 if args.quick else 32)
    args.repeats = args.repeats or 5
    args.overhead_samples = args.overhead_samples or (4 if args.quick else 16)

    start = time.perf_counter()
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if cuda else None,
                    "load_average_start": list(os.getloadavg())},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "targets": TARGETS,
        "models": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model_dir = args.model
        else:
            from mgpo.tiny import build_tiny_model

            model_dir = str(build_tiny_model(Path(tmp) / "tiny"))
        device = "cuda" if cuda else "cpu"
        report["models"].append(bench_model("tiny Qwen2.5-VL", model_dir, args, device, "float32"))
        if args.full_size:
            if not cuda:
                print("--full-size needs a CUDA GPU; skipped", flush=True)
                report["full_size"] = "skipped: no CUDA GPU"
            else:
                full = build_full_size(Path(tmp) / "full7b")
                report["models"].append(bench_model("Qwen2.5-VL-7B config, random weights", str(full), args,
                                                    "cuda", "bfloat16"))  # fmt: skip
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["total_s"] = round(time.perf_counter() - start, 1)
    report["path"] = args.out
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
