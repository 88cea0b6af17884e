"""The `mgpo` command: a thin Typer switchboard over the library. Each command parses, calls one library function
and prints. User mistakes (MgpoError) become one line on stderr and exit code 2; MGPO_DEBUG=1 shows tracebacks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperOption

from mgpo.engine import DEFAULT_MODEL
from mgpo.errors import MgpoError
from mgpo.options import BACKEND, IMAGES, PROTOCOL, SAMPLING, backend_options, with_options

app = typer.Typer(
    help="Multi-turn grounding for vision-language models: infer, eval, train and show crop trajectories.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def _type_unless_flag(self: TyperOption, ctx: Any) -> str | None:
    """Typer 0.29 prints a type after every option, so flags read `--json <bool>` as if they took a value; a flag
    takes none, so it shows none (value options keep `<int>`, `<path>`, ...)."""
    return None if self.is_flag else _typer_display_type(self, ctx)


_typer_display_type = getattr(TyperOption, "display_type_rich", None)
if _typer_display_type is not None:  # a Typer without the method prints no placeholder to begin with
    TyperOption.display_type_rich = _type_unless_flag  # type: ignore[method-assign]

# ---------------------------------------------------------------------------------------------------------------
# Shared options

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id or local model directory.")]
BackendOpt = Annotated[str, typer.Option("--backend", "-b", help="hf | openai | vllm | scripted.")]
ResponsesOpt = Annotated[
    Path | None, typer.Option("--responses", help="JSONL of recorded turns for --backend scripted.")
]
PresetOpt = Annotated[
    str, typer.Option("--protocol", help="paper (two-turn MGPO) | direct (single turn).", rich_help_panel="Protocol")
]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Samples per backend call.", rich_help_panel="Backend")]


def protocol_config(preset: str = "paper", **options):
    """Build a ProtocolConfig from CLI values, turning invalid ones into a one-line error."""
    from mgpo.protocol import ProtocolConfig

    try:
        return ProtocolConfig.from_preset(preset, **options)
    except ValueError as exc:
        raise MgpoError(str(exc)) from exc


def decoding(preset: str | None, temperature: float | None, top_p: float | None, seed: int | None):
    """Sampling settings from the CLI (greedy unless asked); the scripted backend ignores them."""
    from mgpo.sampling import Sampling

    return Sampling.make(preset, temperature, top_p, seed)


def protocol_options(options: dict) -> dict:
    """The ProtocolConfig fields among a command's shared options."""
    from mgpo.options import PROTOCOL_NAMES

    return {k: v for k, v in options.items() if k in PROTOCOL_NAMES}


# ---------------------------------------------------------------------------------------------------------------
# Commands


@app.command()
@with_options(PROTOCOL, IMAGES, BACKEND, SAMPLING)
def infer(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    choice: Annotated[list[str] | None, typer.Option("--choice", "-c", help="An answer option (repeatable).")] = None,
    ground_truth: Annotated[str | None, typer.Option("--ground-truth", help="Correct letter, to score.")] = None,
    model: ModelOpt = "Qwen/Qwen2.5-VL-7B-Instruct",
    backend: BackendOpt = "hf",
    responses: ResponsesOpt = None,
    preset: PresetOpt = "paper",
    save_dir: Annotated[Path | None, typer.Option("--save-dir", help="Write trajectory.json, crops, overlay.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the trajectory JSON.")] = False,
    options: dict | None = None,
) -> None:
    """Answer one question about one image with multi-turn grounding, and show the trajectory."""
    from mgpo.artifacts import save_artifacts
    from mgpo.engine import build_engine
    from mgpo.infer import check_ground_truth, load_input
    from mgpo.infer import infer as run_infer
    from mgpo.view import print_trajectory

    options = options or {}
    cfg = protocol_config(preset, **protocol_options(options))
    max_image_pixels = options["max_image_pixels"]
    ground_truth = check_ground_truth(ground_truth, choice)  # a letter past the choices: one line, no model load
    original = load_input(image, max_image_pixels, cfg.image_mode, cfg.view_pixels)  # fails before a model loads
    given = backend_options(backend, options)
    if backend != "scripted":
        given["decoding"] = decoding(options["sampling"], options["temperature"], options["top_p"], options["seed"])
    engine = build_engine(backend, model, cfg, responses, max_image_pixels, **given)
    traj = run_infer(engine, original, question, choice or [], ground_truth)
    traj.image_path = str(image)
    if save_dir:
        save_artifacts(traj, original, save_dir)
    if as_json:
        typer.echo(traj.to_json())
    else:
        print_trajectory(traj, Console(), image=original)
        if save_dir:
            err.print(f"saved to {escape(str(save_dir))}/")
    if traj.error:
        raise MgpoError(traj.error)


@app.command("tiny-model")
def tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the model into.")],
    seed: Annotated[int, typer.Option(help="Weight initialisation seed.")] = 0,
    family: Annotated[
        str, typer.Option("--family", help="qwen2_5_vl (default) | qwen2_vl | qwen3_vl | qwen3_5.")
    ] = "qwen2_5_vl",
) -> None:
    """Write a tiny random Qwen-VL (real architecture, processor and chat template) for offline use."""
    from mgpo.families import get_family
    from mgpo.tiny import build_tiny_model

    label = get_family(family).label  # an unknown family is one line, before anything is written
    path = build_tiny_model(out_dir, seed=seed, family=family)
    typer.echo(f"tiny {label} written to {path}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the demo writes its files.")] = Path("mgpo-demo"),
) -> None:
    """Offline, no GPU: a synthetic high-res image, the tiny local model, a full infer and its trajectory view."""
    from mgpo.demo import run_demo

    run_demo(out_dir, Console())


@app.command("env")
def env_(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Versions, device and a check of every integration mgpo relies on, for bug reports; exit 1 if one fails."""
    import json

    from mgpo.env import collect, format_report

    report = collect()
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    raise typer.Exit(0 if report.ok else 1)


# ---------------------------------------------------------------------------------------------------------------
# show (mgpo.view)


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="trajectory.json (infer --save-dir) or trajectories.jsonl (eval).")],
    index: Annotated[
        int | None, typer.Option("--index", "-i", help="Show only the I-th selected sample (0-based; -1 = last).")
    ] = None,
    doc_id: Annotated[str | None, typer.Option("--id", help="Only the sample with this doc_id / id.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only wrong answers.")] = False,
    correct: Annotated[bool, typer.Option("--correct", help="Only right answers.")] = False,
    task: Annotated[str | None, typer.Option("--task", help="Only rows of this eval task.")] = None,
    category: Annotated[str | None, typer.Option("--category", help="Only rows of this category.")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write a composite PNG per sample instead.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write one self-contained HTML page instead.")] = None,
    no_pager: Annotated[bool, typer.Option("--no-pager", help="Print every sample instead of paging.")] = False,
    prompts: Annotated[bool, typer.Option("--prompts", help="Also show each turn's prompt.")] = False,
) -> None:
    """Show crop trajectories: the image with each turn's box, the crops and the model's turns (n/p/q to page)."""
    from mgpo.view import Selection, show_file

    selection = Selection(index, doc_id, failed, correct, task, category)
    written = show_file(file, selection, Console(), png, html, page=False if no_pager else None, prompts=prompts)
    for path in written:
        typer.echo(f"wrote {path}")


# ---------------------------------------------------------------------------------------------------------------
# train (mgpo.train): MGPO and its GRPO / SFT baselines on TRL


@app.command()
@with_options(PROTOCOL, IMAGES)
def train(
    data: Annotated[
        str | None,
        typer.Option("--data", help="Parquet/JSONL file, folder, or Hub dataset id; required here or in --config."),
    ] = None,
    algo: Annotated[
        str | None, typer.Option("--algo", help="mgpo (two turns) | grpo (single turn) | sft. Default: mgpo.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help=f"Hub id or local model directory. Default: {DEFAULT_MODEL}.")
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", "-o", help="Checkpoints and final model. Default: mgpo-train.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML of train / GRPOConfig settings.")] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="default | paper (the paper's recipe). Default: default.")
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split of a Hub dataset. Default: train.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Use only the first N rows. Default: all.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps (overrides epochs).")] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--learning-rate", "--lr", help="Optimizer learning rate.")
    ] = None,
    num_generations: Annotated[int | None, typer.Option("--num-generations", "-n", help="Rollouts per prompt.")] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="KL coefficient (0: no reference model).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Per-device train batch size.")] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", help="Gradient accumulation steps.")] = None,
    max_completion_length: Annotated[
        int | None, typer.Option("--max-completion-length", help="Token budget of the whole response.")
    ] = None,
    turn_max_new_tokens: Annotated[
        int | None, typer.Option("--turn-max-new-tokens", help="Per-turn cap. Default: the model's, else 8192.")
    ] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", help="Rollout sampling temperature.")] = None,
    reward: Annotated[
        list[str] | None,
        typer.Option("--reward", help="accuracy | format | grounding | valid_box; repeatable. Default: accuracy."),
    ] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--no-lora", help="Train a LoRA adapter (peft). Default: no-lora.")
    ] = None,
    merge_lora: Annotated[
        bool | None,
        typer.Option("--merge-lora/--no-merge-lora", help="Save LoRA merged into a full model. Default: merge-lora."),
    ] = None,
    use_vllm: Annotated[bool | None, typer.Option("--use-vllm/--no-vllm", help="Generate with vLLM.")] = None,
    vllm_mode: Annotated[str | None, typer.Option("--vllm-mode", help="colocate | server.")] = None,
    report_to: Annotated[str | None, typer.Option("--report-to", help="none | wandb | tensorboard.")] = None,
    save_steps: Annotated[int | None, typer.Option("--save-steps", help="Checkpoint every N steps.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Training seed (TRL's seed).")] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="checkpoint-N folder, or 'latest'. Default: start fresh.")
    ] = None,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="Any TRL config field, KEY=VALUE (YAML value); repeatable.")
    ] = None,
    options: dict | None = None,
) -> None:
    """Train with MGPO (or the GRPO / SFT baselines) on TRL; saves a model `mgpo infer --model` loads.

    Unset options come from --config, then --preset, then the default in their help, else TRL's default."""
    from mgpo.train.config import make_config, parse_settings
    from mgpo.train.run import train as run_train

    options = options or {}
    cfg = make_config(
        config, algo=algo, data=data, model=model, output_dir=output_dir, preset=preset, split=split, limit=limit,
        rewards=reward or None, lora=lora, merge_lora=merge_lora, turn_max_new_tokens=turn_max_new_tokens,
        resume_from_checkpoint=resume,
        max_image_pixels=options["max_image_pixels"], protocol=protocol_options(options),
        trl={**parse_settings(setting or []), "max_steps": max_steps, "learning_rate": learning_rate,
             "num_generations": num_generations, "beta": beta, "per_device_train_batch_size": batch_size,
             "gradient_accumulation_steps": grad_accum, "max_completion_length": max_completion_length,
             "temperature": temperature, "use_vllm": use_vllm, "vllm_mode": vllm_mode, "report_to": report_to,
             "save_steps": save_steps, "seed": seed},
    )  # fmt: skip
    result = run_train(cfg, echo=lambda line: err.print(line, soft_wrap=True, highlight=False, markup=False))
    typer.echo(f"trained {result.steps} step(s); model saved to {result.output_dir} (log: {result.log_file})")


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(help="Output directory of `mgpo train` (or its train_log.jsonl).")],
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write. Default: RUN_DIR/curves.png.")] = None,
) -> None:
    """Draw a training run's curves (reward, valid-box ratio, KL, entropy per step) to a PNG."""
    from mgpo.train.curves import plot_run

    typer.echo(f"wrote {plot_run(run_dir, out)}")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: `mgpo eval`, `mgpo compare`, `mgpo data synth` (library: mgpo.eval)

data_app = typer.Typer(help="Benchmark data: a synthetic high-resolution V*-schema set.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.command("eval")
@with_options(PROTOCOL, IMAGES, BACKEND, SAMPLING)
def eval_(
    task: Annotated[list[str], typer.Option("--task", "-t", help="lmms-eval task, e.g. mgpo_vstar (repeatable).")],
    data: Annotated[Path | None, typer.Option("--data", help="Local parquet/JSONL file or folder; no network.")] = None,
    model: ModelOpt = "Qwen/Qwen2.5-VL-7B-Instruct",
    backend: BackendOpt = "hf",
    responses: ResponsesOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First N samples per task.")] = None,
    preset: PresetOpt = "paper",
    batch_size: BatchOpt = 1,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Run directory.")] = Path("mgpo-eval"),
    resume: Annotated[bool, typer.Option("--resume", help="Skip samples already in trajectories.jsonl.")] = False,
    shuffle_options: Annotated[
        int | None, typer.Option("--shuffle-options", help="Permute options per sample with this seed.")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs per sample, for Avg@k.")] = 1,
    ablate: Annotated[bool, typer.Option("--ablate", help="Also run the single-turn direct prompt.")] = False,
    show_failures: Annotated[
        int, typer.Option("--show-failures", help="Then show the first N wrong answers (image, boxes, turns).")
    ] = 0,
    options: dict | None = None,
) -> None:
    """Evaluate on V* Bench / MME-RealWorld / HR-Bench through lmms-eval; writes results.json and trajectories."""
    from mgpo.eval.report import results_table
    from mgpo.eval.runner import EvalOptions, incomplete, process_index, run_eval

    options = options or {}
    cfg = protocol_config(preset, **protocol_options(options))
    given = backend_options(backend, options)
    opts = EvalOptions(
        tasks=task, output_dir=output_dir, data=data, model=model, backend=backend, responses=responses, protocol=cfg,
        limit=limit, batch_size=batch_size, resume=resume, shuffle_options=shuffle_options, repeats=repeats,
        ablate=ablate, device=given.pop("device", "auto"), dtype=given.pop("dtype", "auto"),
        max_image_pixels=options["max_image_pixels"], backend_options=given,
        sampling=decoding(options["sampling"], options["temperature"], options["top_p"], options["seed"]),
    )  # fmt: skip
    results = run_eval(opts, err)
    if process_index()[0] != 0:  # of several processes (accelerate launch), rank 0 reports the merged run
        return
    Console().print(results_table(results))
    if show_failures:
        from mgpo.types import iter_jsonl
        from mgpo.view import show_failures as print_failures

        print_failures(iter_jsonl(output_dir / "trajectories.jsonl"), show_failures, Console())
    problem = incomplete(results, output_dir)
    if problem:
        raise MgpoError(problem)
    out = escape(str(output_dir))
    err.print(f"results in {out}/results.json, trajectories in {out}/trajectories.jsonl")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories of `mgpo eval` (two or more).")],
) -> None:
    """Per-category accuracy across runs, deltas to the first run, and McNemar tests on shared samples."""
    from mgpo.eval.compare import compare_runs, print_comparison

    print_comparison(compare_runs(run_dirs), Console())


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the dataset into.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    correct_first: Annotated[
        bool, typer.Option("--correct-first", help="V*'s convention: the correct option is always (A).")
    ] = False,
) -> None:
    """Write a synthetic V*-schema benchmark: large images with small targets, and ground-truth boxes."""
    from mgpo.eval.synth import write_synth

    path = write_synth(out, n=n, seed=seed, correct_first=correct_first)
    typer.echo(f"{n} samples written to {path} (images in {out}/images)")


def main() -> None:
    """Console entry point: run the app, turning user errors into one line instead of a traceback."""
    try:
        app()
    except MgpoError as exc:
        if os.environ.get("MGPO_DEBUG"):
            raise
        # the message holds user text (paths, names) that may look like rich markup: never parse it as such
        err.print(Text.assemble(("error:", "bold red"), f" {exc}"), highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
