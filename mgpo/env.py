"""`mgpo env`: what this environment runs, and whether each integration mgpo relies on still works.

Every check touches the real API of one dependency the way mgpo uses it (lmms-eval's evaluator and task manager,
TRL's GRPOTrainer internals, the Qwen2.5-VL processor, accelerate, datasets' parquet reader, Pillow's codecs), so a
release that breaks one of them is named here in one line, with a fix, instead of as a traceback mid-run. The same
checks run in the test suite (tests/test_env.py).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import inspect
import io
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Shown in the version list; every one of them is a declared dependency of mgpo or of lmms-eval / TRL.
KEY_PACKAGES = (
    "torch", "torchvision", "transformers", "tokenizers", "accelerate", "datasets", "trl", "peft", "lmms-eval",
    "pillow", "numpy", "pyarrow", "filelock", "huggingface-hub", "qwen-vl-utils", "mathruler", "sympy", "typer",
    "rich",
)  # fmt: skip
OPTIONAL_PACKAGES = {"vllm": "vllm", "flash-attn": "flash_attn"}  # distribution -> import name
CONSTRAINTS = "constraints.txt"


@dataclass
class Check:
    """One line of the report: a named check, its package, pass/fail, what it saw and, when it failed, the fix."""

    name: str
    package: str
    ok: bool
    detail: str = ""
    fix: str | None = None
    required: bool = True
    seconds: float = 0.0


@dataclass
class EnvReport:
    """Everything `mgpo env` prints."""

    python: str
    platform: str
    mgpo: str | None
    packages: dict[str, str | None]
    device: dict[str, Any]
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# ---------------------------------------------------------------------------------------------------------------
# Versions and the device


def version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def device_info() -> dict[str, Any]:
    """torch's view of the accelerators: CUDA (version, devices), MPS."""
    try:
        import torch
    except Exception as exc:  # reported as a failed check too; the device block just says why it is empty
        return {"error": _one_line(exc)}
    info: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda}
    if info["cuda_available"]:
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    mps = getattr(torch.backends, "mps", None)
    info["mps_available"] = bool(mps and mps.is_available())
    return info


# ---------------------------------------------------------------------------------------------------------------
# Checks: each raises on failure; run_check turns the exception into a line naming the package that broke


def requirements() -> dict[str, str]:
    """mgpo's declared core requirements as {normalised name: requirement text}; empty when mgpo is not installed."""
    from packaging.requirements import Requirement

    try:
        declared = md.requires("mgpo") or []
    except md.PackageNotFoundError:
        return {}
    out = {}
    for text in declared:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out[_norm(req.name)] = str(req)
    return out


def check_requirements() -> str:
    """Every core requirement of mgpo is installed at a version inside its declared bounds."""
    from packaging.requirements import Requirement

    declared = requirements()
    if not declared:
        return "mgpo is not installed as a package (running from a source tree); bounds not checked"
    bad = []
    for name, text in declared.items():
        installed = version(name)
        if installed is None or not Requirement(text).specifier.contains(installed, prereleases=True):
            bad.append((name, text, installed))
    if bad:
        name, text, installed = bad[0]
        more = f" (and {len(bad) - 1} more: {', '.join(b[0] for b in bad[1:])})" if len(bad) > 1 else ""
        raise PackageProblem(name, f"{name} {installed or 'missing'} does not satisfy {text}{more}")
    return f"{len(declared)} requirements within their bounds"


def check_lmms_evaluator() -> str:
    """lmms-eval's evaluator imports and can install its file-lock patch, as every `simple_evaluate` does."""
    import lmms_eval.evaluator as evaluator

    if not callable(getattr(evaluator, "simple_evaluate", None)):
        raise PackageProblem("lmms-eval", "lmms_eval.evaluator.simple_evaluate is missing")
    patch = getattr(evaluator, "_enable_reentrant_filelocks", None)
    if patch is not None:  # lmms-eval 0.7.3 imports filelock's private module here (broken by filelock 4.3)
        patch()
    return "simple_evaluate ready"


def check_lmms_tasks() -> str:
    """lmms-eval's TaskManager indexes mgpo's task YAMLs, and the `mgpo` model is registered by entry point."""
    from lmms_eval.tasks import TaskManager

    from mgpo.eval.tasks import tasks_dir

    folder = tasks_dir()
    manager = TaskManager("ERROR", include_path=str(folder), include_defaults=False)
    ours = sorted(t for t in manager.all_tasks if t.startswith("mgpo_"))
    if "mgpo_vstar" not in ours:
        raise PackageProblem("lmms-eval", f"TaskManager found no mgpo_vstar task in {folder}")
    points = [e.name for e in md.entry_points(group="lmms_eval.models")]
    if requirements() and "mgpo" not in points:
        raise PackageProblem("mgpo", "the lmms_eval.models entry point `mgpo` is not registered; reinstall mgpo")
    return f"{len(ours)} mgpo tasks in {folder}"


def check_trl() -> str:
    """TRL's GRPOTrainer still has the internals MGPOTrainer overrides or calls, with the arguments it passes."""
    from trl import GRPOConfig, GRPOTrainer

    needed = {
        "_generate": ("prompts",),
        "_generate_and_score_completions": ("inputs",),
        "_tokenize_prompts": ("prompts",),
        "_generate_single_turn": ("prompt_ids", "images", "has_tool_images"),
    }
    for name, params in needed.items():
        method = getattr(GRPOTrainer, name, None)
        if method is None:
            raise PackageProblem("trl", f"GRPOTrainer.{name} is gone")
        missing = [p for p in params if p not in inspect.signature(method).parameters]
        if missing:
            raise PackageProblem("trl", f"GRPOTrainer.{name} no longer takes {', '.join(missing)}")
    GRPOConfig(output_dir=tempfile.gettempdir(), report_to=[], use_cpu=True)
    return "GRPOTrainer internals and GRPOConfig as expected"


def check_qwen_processor() -> str:
    """The Qwen2.5-VL model class imports and its real processor (built offline) turns an image into a grid."""
    from PIL import Image
    from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: F401

    from mgpo.tiny import build_processor

    processor = build_processor()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    out = processor(text=[text], images=[Image.new("RGB", (112, 84), "red")], return_tensors="pt")
    grid = out["image_grid_thw"].tolist()
    if grid != [[1, 6, 8]]:
        raise PackageProblem("transformers", f"Qwen2.5-VL processor gave image_grid_thw {grid} for 112x84")
    return "image_grid_thw [1, 6, 8] for a 112x84 image"


def check_torchvision() -> str:
    """torchvision's compiled ops load against this torch (a mismatched pair fails here, not in the processor)."""
    import torch
    import torchvision.ops

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist()
    if keep != [0]:
        raise PackageProblem("torchvision", f"torchvision.ops.nms returned {keep}")
    return "ops.nms works"


def check_accelerate() -> str:
    """accelerate's process state initialises (TRL and lmms-eval build on it)."""
    from accelerate import PartialState

    state = PartialState()
    return f"distributed type {state.distributed_type.value}, {state.num_processes} process(es)"


def check_datasets_parquet() -> str:
    """datasets reads a parquet file through load_dataset('parquet'), as `mgpo train --data` does."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    datasets.disable_progress_bars()  # a progress bar per check would garble a pasted report
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        pq.write_table(pa.table({"question": ["q"], "answer": ["A"]}), path)
        ds = datasets.load_dataset("parquet", data_files=[str(path)], split="train", cache_dir=str(Path(tmp) / "c"))
        if ds[0] != {"question": "q", "answer": "A"}:
            raise PackageProblem("datasets", f"parquet row read back as {ds[0]}")
    return "load_dataset('parquet') round trip"


def check_pillow() -> str:
    """Pillow encodes and decodes the formats benchmarks ship: PNG, JPEG, WebP, TIFF."""
    from PIL import Image

    image = Image.new("RGB", (32, 24), (200, 30, 30))
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        buf = io.BytesIO()
        image.save(buf, fmt)
        buf.seek(0)
        with Image.open(buf) as back:
            back.load()
            if back.size != (32, 24):
                raise PackageProblem("pillow", f"{fmt} decoded at {back.size}")
    return "PNG, JPEG, WebP, TIFF"


def check_mathruler() -> str:
    """mathruler's grader (the paper's scorer) imports with the packages it uses but does not declare."""
    from mathruler.grader import extract_boxed_content, grade_answer

    got = extract_boxed_content("so \\boxed{\\textbf{B}}")
    if not grade_answer(got, "B") or grade_answer("A.", "A"):
        raise PackageProblem("mathruler", f"grade_answer no longer grades as the reference did (read {got!r})")
    return "extract_boxed_content + grade_answer"


CHECKS: dict[str, tuple[str, Callable[[], str]]] = {
    "requirements": ("mgpo", check_requirements),
    "lmms-eval evaluator": ("lmms-eval", check_lmms_evaluator),
    "lmms-eval tasks": ("lmms-eval", check_lmms_tasks),
    "TRL GRPOTrainer": ("trl", check_trl),
    "Qwen2.5-VL processor": ("transformers", check_qwen_processor),
    "torchvision ops": ("torchvision", check_torchvision),
    "accelerate": ("accelerate", check_accelerate),
    "datasets parquet": ("datasets", check_datasets_parquet),
    "Pillow codecs": ("pillow", check_pillow),
    "mathruler grader": ("mathruler", check_mathruler),
}


class PackageProblem(RuntimeError):
    """A check failed because of one named package."""

    def __init__(self, package: str, message: str):
        super().__init__(message)
        self.package = package


def run_check(name: str) -> Check:
    """Run one named check; a failure is a Check naming the package to blame and the fix."""
    package, fn = CHECKS[name]
    start = time.perf_counter()
    try:
        detail = fn()
        return Check(name, package, True, detail, seconds=round(time.perf_counter() - start, 2))
    except Exception as exc:
        blamed = _blame(exc, package)
        detail = _one_line(exc) if isinstance(exc, PackageProblem) else f"{type(exc).__name__}: {_one_line(exc)}"
        return Check(name, blamed, False, detail, fix_for(blamed), seconds=round(time.perf_counter() - start, 2))


def optional_check(dist: str, module: str) -> Check:
    """Whether an optional accelerator package imports (absent is fine; present but broken is reported)."""
    installed = version(dist)
    if installed is None:
        return Check(dist, dist, True, "not installed (optional)", required=False)
    try:
        importlib.import_module(module)
        return Check(dist, dist, True, f"{installed}, importable", required=False)
    except Exception as exc:
        return Check(
            dist,
            dist,
            False,
            f"{installed} installed but import fails: {_one_line(exc)}",
            f'pip install --force-reinstall "{dist}=={installed}" (or uninstall it)',
            required=False,
        )


def fix_for(package: str) -> str:
    """The one-line fix for a broken package: mgpo's declared bound, or the tested set in constraints.txt."""
    declared = requirements().get(_norm(package))
    tested = tested_versions().get(_norm(package))
    if tested:
        return f'pip install "{package}=={tested}"  (the tested version; all of them: pip install -c {CONSTRAINTS} .)'
    if declared:
        return f'pip install "{declared}"'
    return f"reinstall the tested set: pip install -c {CONSTRAINTS} -e .  ({package} is the package at fault)"


def tested_versions() -> dict[str, str]:
    """The pins of constraints.txt when this mgpo runs from a checkout; empty otherwise."""
    path = Path(__file__).resolve().parents[1] / CONSTRAINTS
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, _, ver = line.partition("==")
            pins[_norm(name)] = ver.strip()
    return pins


def _blame(exc: BaseException, default: str) -> str:
    """The distribution behind a failure: the package a check named, else the one a failed import points at."""
    if isinstance(exc, PackageProblem):
        return exc.package
    if isinstance(exc, ImportError) and exc.name:
        top = exc.name.split(".")[0]
        dists = md.packages_distributions().get(top)
        if dists:
            return dists[0]
    return default


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]


# ---------------------------------------------------------------------------------------------------------------
# The report


def collect(names: list[str] | None = None) -> EnvReport:
    """Versions, the device and every check (or the named ones)."""
    report = EnvReport(
        python=sys.version.split()[0],
        platform=platform.platform(),
        mgpo=version("mgpo"),
        packages={name: version(name) for name in KEY_PACKAGES},
        device=device_info(),
    )
    report.checks = [run_check(n) for n in (names or list(CHECKS))]
    report.checks += [optional_check(d, m) for d, m in OPTIONAL_PACKAGES.items()]
    return report


def format_report(report: EnvReport) -> str:
    """Plain text that pastes cleanly into a bug report."""
    lines = [
        f"- mgpo: {report.mgpo or 'not installed (source tree)'}",
        f"- Python: {report.python}",
        f"- Platform: {report.platform}",
    ]
    lines += [f"- {name}: {ver or 'not installed'}" for name, ver in report.packages.items()]
    dev = report.device
    if "error" in dev:
        lines.append(f"- Device: unknown ({dev['error']})")
    elif dev.get("cuda_available"):
        lines.append(f"- Device: CUDA {dev.get('cuda_version')}, {', '.join(dev.get('devices', []))}")
    else:
        cuda = f"torch built with CUDA {dev['cuda_version']}" if dev.get("cuda_version") else "CPU-only torch"
        mps = ", MPS available" if dev.get("mps_available") else ""
        lines.append(f"- Device: no GPU visible ({cuda}{mps})")
    lines.append("")
    lines.append("Checks:")
    for c in report.checks:
        mark = "✓" if c.ok else "✗"
        tag = "" if c.required else " (optional)"
        lines.append(f"{mark} {c.name}{tag}: {c.detail}" + ("" if c.ok else f" [package: {c.package}]"))
        if not c.ok and c.fix:
            lines.append(f"    fix: {c.fix}")
    failed = [c for c in report.checks if c.required and not c.ok]
    lines.append("")
    lines.append("All required checks passed." if not failed else f"{len(failed)} required check(s) failed.")
    return "\n".join(lines)
