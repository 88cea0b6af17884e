"""The `mgpo` command: a thin Typer switchboard over the library. Each command parses, calls one library function
and prints. User mistakes (MgpoError) become one line on stderr and exit code 2; MGPO_DEBUG=1 shows tracebacks."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mgpo.errors import MgpoError

app = typer.Typer(
    help="Multi-turn grounding for vision-language models: infer, eval, train and show crop trajectories.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)

# ---------------------------------------------------------------------------------------------------------------
# Shared options

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id or local model directory.")]
BackendOpt = Annotated[str, typer.Option("--backend", "-b", help="hf | scripted.")]
ResponsesOpt = Annotated[
    Path | None, typer.Option("--responses", help="JSONL of recorded turns for --backend scripted.")
]
MaxTurnsOpt = Annotated[int | None, typer.Option("--max-turns", help="Assistant turns; >2 zooms iteratively.")]
PresetOpt = Annotated[str, typer.Option("--protocol", help="paper (two-turn MGPO) | direct (single turn).")]
MinPixOpt = Annotated[int | None, typer.Option("--min-pixels", help="Full-image lower pixel limit.")]
MaxPixOpt = Annotated[int | None, typer.Option("--max-pixels", help="Full-image upper pixel limit.")]
CropMinOpt = Annotated[int | None, typer.Option("--crop-min-pixels", help="Crop lower pixel limit.")]
CropMaxOpt = Annotated[int | None, typer.Option("--crop-max-pixels", help="Crop upper pixel limit.")]
ResamplingOpt = Annotated[str | None, typer.Option("--resampling", help="nearest (paper) | bicubic | lanczos | ...")]
BoxPolicyOpt = Annotated[str | None, typer.Option("--box-policy", help="reject (paper) | clamp.")]
CoordsOpt = Annotated[str | None, typer.Option("--coords", help="resized-pixels (Qwen2.5-VL) | normalized-1000.")]
ParsingOpt = Annotated[str | None, typer.Option("--parsing", help="strict (paper) | lenient.")]
MaxNewOpt = Annotated[int | None, typer.Option("--max-new-tokens", help="Per-turn cap (default: model's, else 8192).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Samples per backend call.")]
MaxImagePixOpt = Annotated[
    int | None, typer.Option("--max-image-pixels", help="Refuse larger input images (decompression-bomb guard).")
]


def protocol_config(preset: str = "paper", **options):
    """Build a ProtocolConfig from CLI values, turning invalid ones into a one-line error."""
    from mgpo.protocol import ProtocolConfig

    try:
        return ProtocolConfig.from_preset(preset, **options)
    except ValueError as exc:
        raise MgpoError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------------------------
# Commands


@app.command()
def infer(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    question: Annotated[str, typer.Argument(help="The question about the image.")],
    choice: Annotated[list[str] | None, typer.Option("--choice", "-c", help="An answer option (repeatable).")] = None,
    ground_truth: Annotated[str | None, typer.Option("--ground-truth", help="Correct letter, to score.")] = None,
    model: ModelOpt = "Qwen/Qwen2.5-VL-7B-Instruct",
    backend: BackendOpt = "hf",
    responses: ResponsesOpt = None,
    max_turns: MaxTurnsOpt = None,
    preset: PresetOpt = "paper",
    min_pixels: MinPixOpt = None,
    max_pixels: MaxPixOpt = None,
    crop_min_pixels: CropMinOpt = None,
    crop_max_pixels: CropMaxOpt = None,
    resampling: ResamplingOpt = None,
    box_policy: BoxPolicyOpt = None,
    coords: CoordsOpt = None,
    parsing: ParsingOpt = None,
    max_new_tokens: MaxNewOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    max_image_pixels: MaxImagePixOpt = None,
    save_dir: Annotated[Path | None, typer.Option("--save-dir", help="Write trajectory.json, crops, overlay.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the trajectory JSON.")] = False,
) -> None:
    """Answer one question about one image with multi-turn grounding, and show the trajectory."""
    from mgpo.artifacts import save_artifacts
    from mgpo.infer import build_engine, load_input
    from mgpo.infer import infer as run_infer
    from mgpo.render import print_trajectory

    cfg = protocol_config(
        preset, max_turns=max_turns, min_pixels=min_pixels, max_pixels=max_pixels, crop_min_pixels=crop_min_pixels,
        crop_max_pixels=crop_max_pixels, resampling=resampling, box_policy=box_policy, coords=coords,
        parsing=parsing, max_new_tokens=max_new_tokens,
    )  # fmt: skip
    original = load_input(image, max_image_pixels)  # fail on a bad image before loading a model
    options = {"device": device, "dtype": dtype} if backend == "hf" else {}
    engine = build_engine(backend, model, cfg, responses, max_image_pixels, **options)
    traj = run_infer(engine, original, question, choice or [], ground_truth)
    traj.image_path = str(image)
    if save_dir:
        save_artifacts(traj, original, save_dir)
    if as_json:
        typer.echo(traj.to_json())
    else:
        print_trajectory(traj, Console())
        if save_dir:
            err.print(f"saved to {save_dir}/")
    if traj.error:
        raise MgpoError(traj.error)


@app.command("tiny-model")
def tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the model into.")],
    seed: Annotated[int, typer.Option(help="Weight initialisation seed.")] = 0,
) -> None:
    """Write a tiny random Qwen2.5-VL (real architecture, processor and chat template) for offline use."""
    from mgpo.tiny import build_tiny_model

    path = build_tiny_model(out_dir, seed=seed)
    typer.echo(f"tiny Qwen2.5-VL written to {path}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the demo writes its files.")] = Path("mgpo-demo"),
) -> None:
    """Offline, no GPU: a synthetic high-res image, the tiny local model, a full infer and its trajectory view."""
    from mgpo.demo import run_demo

    run_demo(out_dir, Console())


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: `mgpo eval`, `mgpo compare`, `mgpo data synth` (library: mgpo.eval)

data_app = typer.Typer(help="Benchmark data: a synthetic high-resolution V*-schema set.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.command("eval")
def eval_(
    task: Annotated[list[str], typer.Option("--task", "-t", help="lmms-eval task, e.g. mgpo_vstar (repeatable).")],
    data: Annotated[Path | None, typer.Option("--data", help="Local parquet/JSONL file or folder; no network.")] = None,
    model: ModelOpt = "Qwen/Qwen2.5-VL-7B-Instruct",
    backend: BackendOpt = "hf",
    responses: ResponsesOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First N samples per task.")] = None,
    max_turns: MaxTurnsOpt = None,
    preset: PresetOpt = "paper",
    min_pixels: MinPixOpt = None,
    max_pixels: MaxPixOpt = None,
    crop_min_pixels: CropMinOpt = None,
    crop_max_pixels: CropMaxOpt = None,
    max_new_tokens: MaxNewOpt = None,
    batch_size: BatchOpt = 1,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    max_image_pixels: MaxImagePixOpt = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Run directory.")] = Path("mgpo-eval"),
    resume: Annotated[bool, typer.Option("--resume", help="Skip samples already in trajectories.jsonl.")] = False,
    shuffle_options: Annotated[
        int | None, typer.Option("--shuffle-options", help="Permute options per sample with this seed.")
    ] = None,
    repeats: Annotated[int, typer.Option("--repeats", help="Runs per sample, for Avg@k.")] = 1,
    ablate: Annotated[bool, typer.Option("--ablate", help="Also run the single-turn direct prompt.")] = False,
) -> None:
    """Evaluate on V* Bench / MME-RealWorld / HR-Bench through lmms-eval; writes results.json and trajectories."""
    from mgpo.eval.report import results_table
    from mgpo.eval.runner import EvalOptions, run_eval

    cfg = protocol_config(
        preset, max_turns=max_turns, min_pixels=min_pixels, max_pixels=max_pixels, crop_min_pixels=crop_min_pixels,
        crop_max_pixels=crop_max_pixels, max_new_tokens=max_new_tokens,
    )  # fmt: skip
    opts = EvalOptions(
        tasks=task, output_dir=output_dir, data=data, model=model, backend=backend, responses=responses, protocol=cfg,
        limit=limit, batch_size=batch_size, resume=resume, shuffle_options=shuffle_options, repeats=repeats,
        ablate=ablate, device=device, dtype=dtype, max_image_pixels=max_image_pixels,
    )  # fmt: skip
    results = run_eval(opts, err)
    Console().print(results_table(results))
    err.print(f"results in {output_dir}/results.json, trajectories in {output_dir}/trajectories.jsonl")


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
) -> None:
    """Write a synthetic V*-schema benchmark: large images with small targets, and ground-truth boxes."""
    from mgpo.eval.synth import write_synth

    path = write_synth(out, n=n, seed=seed)
    typer.echo(f"{n} samples written to {path} (images in {out}/images)")


# --------------------------------------------------------------------------------------------------------------- end


def main() -> None:
    """Console entry point: run the app, turning user errors into one line instead of a traceback."""
    try:
        app()
    except MgpoError as exc:
        if os.environ.get("MGPO_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
