"""`mgpo eval`: drive lmms-eval programmatically with the mgpo model, then write results.json.

Outputs in the run directory: ``trajectories.jsonl`` (one row per finished sample, appended as it finishes),
``results.json`` (mgpo's metrics next to lmms-eval's own aggregates), ``lmms_eval/<mode>/samples_<task>.jsonl``
(lmms-eval's per-sample log) and ``images/`` (in-memory images saved for `mgpo show`).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mgpo.engine import DEFAULT_MODEL, Engine, build_engine
from mgpo.errors import MgpoError, one_line
from mgpo.eval import metrics
from mgpo.eval.docs import read_local_records
from mgpo.eval.fingerprint import check_or_record, fingerprint
from mgpo.eval.run_log import RunLog, merge_parts, process_index, process_log, read_rows, retryable, row_key
from mgpo.eval.tasks import (
    TASKS_DIR,
    TaskDataError,
    offline_data_error,
    stock_task_error,
    task_names,
    unknown_task_error,
)
from mgpo.protocol import ProtocolConfig
from mgpo.sampling import Sampling

TRAJECTORIES = "trajectories.jsonl"
RESULTS = "results.json"


@dataclass
class EvalOptions:
    """Everything one `mgpo eval` run needs."""

    tasks: list[str]
    output_dir: Path
    data: Path | None = None
    model: str = DEFAULT_MODEL
    backend: str = "hf"
    responses: Path | None = None
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig.paper)
    limit: int | None = None
    batch_size: int = 1
    resume: bool = False
    shuffle_options: int | None = None
    repeats: int = 1
    ablate: bool = False
    device: str = "auto"
    dtype: str = "auto"
    max_image_pixels: int | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)  # e.g. base_url, concurrency for openai
    sampling: Sampling = field(default_factory=Sampling)  # greedy by default; seeded per (task, doc, repeat, turn)
    tasks_dir: Path = TASKS_DIR


def _task_configs(opts: EvalOptions, tm) -> list[dict[str, Any]]:
    """The tasks as lmms-eval configs whose process_docs carries this run's data and option shuffle as arguments
    (lmms-eval accepts config dicts and calls process_docs(dataset)); no environment variable travels between us."""
    data = str(Path(opts.data).resolve()) if opts.data else None
    configs = []  # fresh for every simple_evaluate call: lmms-eval consumes the dicts it is given
    for name in opts.tasks:
        config = tm._get_config(name)  # the YAML with !function resolved, as lmms-eval itself loads it
        config["process_docs"] = functools.partial(
            config["process_docs"], data=data, shuffle_options=opts.shuffle_options
        )
        configs.append(config)
    return configs


def _task_manager(opts: EvalOptions):
    from lmms_eval.tasks import TaskManager

    if not (opts.tasks_dir / "_mgpo_template_yaml").is_file():
        raise MgpoError(f"{opts.tasks_dir}: mgpo task adapters not found; reinstall mgpo (`pip install .`)")
    tm = TaskManager("WARNING", include_path=str(opts.tasks_dir), include_defaults=False, model_name="mgpo")
    missing = [t for t in opts.tasks if t not in tm.all_tasks]
    if missing:
        ours = ", ".join(sorted(t for t in tm.all_tasks if t.startswith("mgpo_")))
        raise MgpoError(f"unknown task {', '.join(missing)}; mgpo tasks are: {ours}")
    return tm


def _check(opts: EvalOptions) -> None:
    if not opts.tasks:
        raise MgpoError("no task given; add --task mgpo_vstar (repeatable)")
    known = task_names(opts.tasks_dir)
    # a typo first (it is not a stock task either), then lmms-eval's own tasks, which mgpo refuses by name
    refused = next((m for t in opts.tasks if (m := unknown_task_error(t, known) or stock_task_error(t))), None)
    if refused:
        raise MgpoError(refused)
    if opts.backend in ("hf", "vllm"):
        from mgpo.backends.hf import _check_local

        _check_local(opts.model)  # a missing model directory is one line before lmms-eval and torch load
    if opts.backend == "hf" and opts.device.startswith("cuda"):
        from mgpo.backends.hf import check_device

        check_device(opts.device)
    if opts.repeats < 1:
        raise MgpoError(f"--repeats must be at least 1, got {opts.repeats}")
    if opts.limit is not None and opts.limit < 1:
        raise MgpoError(f"--limit must be at least 1, got {opts.limit}")
    if opts.data is not None:
        read_local_records(opts.data)  # every row readable (labels, options, boxes): one clear line before any model
    else:
        problem = offline_data_error(opts.tasks)
        if problem:
            raise MgpoError(problem)
    trajectories = opts.output_dir / TRAJECTORIES
    if trajectories.exists() and trajectories.stat().st_size and not opts.resume:
        raise MgpoError(
            f"{opts.output_dir}: holds a previous run; add --resume to continue it, or pick a new --output-dir"
        )


def run_eval(opts: EvalOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the tasks, record every sample, compute the metrics and write results.json; return its content."""
    _check(opts)  # before the heavy imports: a bad flag fails at once
    rank, world = process_index()
    # --resume continues only the same run; of several processes, rank 0 records the fingerprint
    check_or_record(opts.output_dir, fingerprint(opts), opts.resume, record=rank == 0)
    from lmms_eval.evaluator import simple_evaluate

    from mgpo.eval.lmms_model import MgpoModel

    console = console or Console(stderr=True)
    out = opts.output_dir
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tm = _task_manager(opts)
    options = dict(opts.backend_options)
    if opts.backend != "scripted":
        options["decoding"] = opts.sampling
    if opts.backend == "hf":
        options = {"device": opts.device, "dtype": opts.dtype, "batch_size": opts.batch_size, **options}
    engine = build_engine(opts.backend, opts.model, opts.protocol, opts.responses, opts.max_image_pixels,
                          **options)  # fmt: skip
    opts = replace(opts, protocol=engine.config)  # resolved for the model's family (its frame, its box convention)
    run_log, parts = process_log(out / TRAJECTORIES, out / "images", opts.resume, rank, world)
    modes = [("grounded", opts.protocol)]
    if opts.ablate:
        modes.append(("direct", ProtocolConfig.direct(**_pipeline(opts.protocol))))
    lmms_results: dict[str, Any] = {}
    requested: set = set()
    for mode, cfg in modes:
        model = MgpoModel(engine=Engine(engine.backend, cfg, opts.max_image_pixels), run_log=run_log, mode=mode,
                          sampling=opts.sampling,
                          batch_size=opts.batch_size)  # fmt: skip
        with _progress(console, run_log, mode), _own_errors():
            res = simple_evaluate(
                model=model, tasks=_task_configs(opts, tm), task_manager=tm, limit=opts.limit, bootstrap_iters=0,
                log_samples=True, repeats=opts.repeats, verbosity="WARNING",
            )  # fmt: skip
        requested |= model.requested
        lmms_results[mode] = res.get("results", {}) if res else {}  # rank 0 holds lmms-eval's gathered results
        if rank == 0:
            _save_samples(out / "lmms_eval" / mode, res.get("samples", {}) if res else {})
    if parts:
        requested = _gather_parts(out, parts, requested, rank)
    rows = [r for r in read_rows(out / TRAJECTORIES) if row_key(r) in requested]
    results = build_results(opts, rows, lmms_results, time.perf_counter() - started)
    if rank == 0:
        text = json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n"
        (out / RESULTS).write_text(text, encoding="utf-8")
    return results


# ---------------------------------------------------------------------------------------------------------------
# Several processes (accelerate launch / torchrun): lmms-eval gives each rank its share of the docs (and pads the
# shorter shares with a filler request, which the model skips); each rank records its samples in its own part file;
# rank 0 merges the parts into trajectories.jsonl once every rank is done, and writes results.json.


def _gather_parts(out: Path, parts: list[Path], requested: set, rank: int) -> set:
    """Every rank's requested keys, once rank 0 has merged the part files into trajectories.jsonl."""
    import torch.distributed as dist

    if not dist.is_initialized():
        raise MgpoError(f"WORLD_SIZE={len(parts)} but no process group was formed; launch with accelerate or torchrun")
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, sorted(requested))  # also a barrier: every rank has closed its part
    if rank == 0:
        merge_parts(out / TRAJECTORIES, parts)
    dist.barrier()  # the merged file is complete before any rank reads it
    return {tuple(key) for keys in every for key in keys}


def _pipeline(cfg: ProtocolConfig) -> dict[str, Any]:
    """The image-pipeline settings a direct-prompt ablation shares with the grounded run."""
    keep = ("min_pixels", "max_pixels", "processor_min_pixels", "processor_max_pixels", "resampling", "max_new_tokens",
            "answer_fallbacks", "scoring", "image_mode", "max_response_tokens", "model_family",
            "frame_unit")  # fmt: skip
    return {k: getattr(cfg, k) for k in keep}


@contextmanager
def _own_errors() -> Iterator[None]:
    """mgpo's own one-line errors as they were raised, not as lmms-eval wrapped them: a task's data error comes back
    as TaskDataError (see mgpo.eval.tasks), and a retry wrapper (tenacity's RetryError) gives up its last error."""
    try:
        yield
    except TaskDataError as exc:
        raise exc.error from None
    except Exception as exc:
        inner = _retried(exc)
        if inner is None:
            raise
        if isinstance(inner, MgpoError):
            raise inner from None
        raise MgpoError(f"lmms-eval failed building the tasks ({one_line(inner)})") from inner


def _retried(exc: BaseException) -> BaseException | None:
    """The last error inside a tenacity RetryError, else None."""
    attempt = getattr(exc, "last_attempt", None)
    if type(exc).__name__ != "RetryError" or attempt is None:
        return None
    return attempt.exception()


@contextmanager
def _progress(console: Console, run_log: RunLog, mode: str) -> Iterator[None]:
    columns = (TextColumn(f"[bold]{mode}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("elapsed"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(mode, total=None)
        run_log.on_total = lambda n: progress.update(bar, total=n, completed=0)
        run_log.on_row = lambda row: progress.advance(bar)
        try:
            yield
        finally:
            run_log.on_total = run_log.on_row = None


def _save_samples(folder: Path, samples: dict[str, list[dict[str, Any]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for task, items in samples.items():
        with open(folder / f"samples_{task}.jsonl", "w", encoding="utf-8") as fh:
            for item in items:
                fh.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")


def build_results(
    opts: EvalOptions, rows: list[dict[str, Any]], lmms_results: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """results.json: config, per-task metrics (mgpo's and lmms-eval's), the option orders and the ablation."""
    grounded = [r for r in rows if r.get("mode", "grounded") == "grounded"]
    direct = [r for r in rows if r.get("mode") == "direct"]
    tasks = metrics.summarise(grounded, macro_tasks=metrics.MACRO_TASKS)
    for task, entry in tasks.items():
        entry["lmms_eval"] = lmms_results.get("grounded", {}).get(task, {})
        if direct:
            entry["ablation"] = metrics.crop_dependency(
                [r for r in grounded if r["task"] == task], [r for r in direct if r["task"] == task]
            )
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()
              if k not in ("protocol", "sampling")}  # fmt: skip
    config["protocol"] = opts.protocol.to_dict()
    config["sampling"] = opts.sampling.to_dict()
    out: dict[str, Any] = {"config": config, "wall_seconds": round(seconds, 2), "tasks": tasks}
    errored = [r for r in rows if r.get("trajectory", {}).get("error")]
    out["backend_failures"] = _failures([r for r in errored if retryable(r)])
    # a bad input (unreadable image, ...) or a bug: --resume would meet it again
    out["sample_failures"] = _failures([r for r in errored if not retryable(r)])
    if opts.shuffle_options is not None:
        out["option_orders"] = {
            task: {
                r["question_id"]: r.get("option_order")
                for r in grounded
                if r["task"] == task and r.get("repeat", 0) == 0
            }
            for task in tasks
        }
    return out


def _failures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"count": len(rows), "first": rows[0]["trajectory"]["error"] if rows else None}


def incomplete(results: dict[str, Any], output_dir: Path) -> str | None:
    """One line saying which samples did not run (and what to do), or None when every sample ran."""
    failed = results.get("backend_failures") or {}
    refused = results.get("sample_failures") or {}
    parts = []
    if failed.get("count"):
        parts.append(
            f"{failed['count']} sample(s) failed in the backend ({failed['first']}); the finished samples are saved "
            f"in {output_dir}/ — rerun the same command with --resume to retry only those"
        )
    if refused.get("count"):
        parts.append(
            f"{refused['count']} sample(s) could not run ({refused['first']}); they are scored wrong in "
            f"{output_dir}/results.json and the others are saved — fix or remove those rows"
        )
    return "; and ".join(parts) or None
