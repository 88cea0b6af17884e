"""The functions behind the lmms-eval task YAMLs in ``tasks/`` (their utils.py only re-exports these).

Data source: the hub dataset by default, or a local parquet / JSONL file or folder in the same schema, read without
network, and options permuted per sample with a seed. ``mgpo eval`` passes both explicitly: it binds ``data`` and
``shuffle_options`` into each task's ``process_docs`` (see mgpo.eval.runner). For the literal
``lmms-eval --model mgpo`` command, which has no way to pass them, ``MGPO_DATA=PATH`` and ``MGPO_SHUFFLE_OPTIONS=SEED``
in the user's environment are read as overrides; mgpo's own code never sets them. Scoring is mgpo.scoring's, the
function training's reward uses.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo import benchmarks, protocol
from mgpo.errors import MgpoError, one_line
from mgpo.eval import docs as D
from mgpo.eval.metrics import summarise_scores
from mgpo.protocol import ProtocolConfig
from mgpo.scoring import Score, score_response

DATA_ENV = "MGPO_DATA"
SHUFFLE_ENV = "MGPO_SHUFFLE_OPTIONS"
ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def tasks_dir() -> Path:
    """The lmms-eval task YAMLs: ``mgpo/tasks`` in an installed wheel, else ``tasks/`` of the source checkout."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "tasks", package.parent / "tasks"):
        if (folder / "_mgpo_template_yaml").is_file():
            return folder
    return package / "tasks"


TASKS_DIR = tasks_dir()

# task family -> (hub path, hub config name, hub split); the row schema is detected from the columns
HUB = {
    "vstar": ("lmms-lab-encoder/vstar-bench", None, "test"),
    "mmerw": ("yifanzhang114/MME-RealWorld-Lmms-eval", None, "train"),
    "mmerw_lite": ("yifanzhang114/MME-RealWorld-lite-lmms-eval", None, "train"),
    "mmerw_cn": ("yifanzhang114/MME-RealWorld-CN-Lmms-eval", None, "train"),
    "hrbench4k": ("DreamMr/HR-Bench", "hrbench_version_split", "hrbench_4k"),
    "hrbench8k": ("DreamMr/HR-Bench", "hrbench_version_split", "hrbench_8k"),
}


# lmms-eval's own tasks for the same benchmarks: they render the options into the prompt (no choices for turn 2)
# and their scorers misread \boxed{} answers, so through the mgpo model they would give silently wrong numbers
STOCK_TASKS = {
    "vstar_bench": "mgpo_vstar",
    "vstar_bench_direct_attributes": "mgpo_vstar_attr",
    "vstar_bench_relative_position": "mgpo_vstar_pos",
    "mmerealworld": "mgpo_mmerw",
    "mmerealworld_lite": "mgpo_mmerw_lite",
    "mmerealworld_cn": "mgpo_mmerw_cn",
    "hrbench4k": "mgpo_hrbench4k",
    "hrbench8k": "mgpo_hrbench8k",
}


def stock_task_error(task: str) -> str | None:
    """One line refusing a task that is not an mgpo_* adapter (and naming the one to use), or None for ours."""
    if task.startswith("mgpo_"):
        return None
    ours = STOCK_TASKS.get(task.removesuffix("_reasoning"))
    hint = f"use --task {ours}" if ours else "mgpo runs only its own mgpo_* tasks (see tasks/README.md)"
    return (f"task {task!r} is not an mgpo task: its prompt and scorer do not fit the grounding model (no separate "
            f"choices, \\boxed{{}} answers misread), so its numbers would be wrong; {hint}")  # fmt: skip


def task_names(folder: Path = TASKS_DIR) -> list[str]:
    """The mgpo_* task names of the YAMLs in ``folder``, read without importing lmms-eval (a typo is one line at
    once, not after its imports)."""
    names = []
    for file in sorted(folder.glob("*.yaml")):
        found = re.search(r"^task:\s*['\"]?([\w.-]+)", file.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            names.append(found.group(1))
    return names


def unknown_task_error(task: str, known: list[str]) -> str | None:
    """One line for a task name that is neither an mgpo task nor a stock one we map (a typo), naming the closest."""
    if task in known or (not task.startswith("mgpo_") and task.removesuffix("_reasoning") in STOCK_TASKS):
        return None
    import difflib

    close = difflib.get_close_matches(task, known, n=1, cutoff=0.6) or difflib.get_close_matches(
        f"mgpo_{task}", known, n=1, cutoff=0.6
    )
    hint = f"did you mean --task {close[0]}? " if close else ""
    return f"unknown task {task!r}; {hint}mgpo tasks are: {', '.join(known)}"


def task_family(task: str) -> str | None:
    """The benchmark family (a HUB key) of an mgpo task name, e.g. mgpo_vstar_attr -> vstar."""
    name = task.removeprefix("mgpo_")
    for family in sorted(HUB, key=len, reverse=True):
        if name == family or (name.startswith(f"{family}_") and name.removeprefix(f"{family}_") in ("attr", "pos")):
            return family
    return None


def hub_offline() -> bool:
    """True when the user's environment turns the Hugging Face Hub off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))  # fmt: skip


def hub_cached(family: str) -> bool:
    """Whether the family's hub dataset is in a local cache (datasets' or the hub's), so it loads offline."""
    path = HUB[family][0]
    org, _, name = path.partition("/")
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets").expanduser()
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or home / "hub")
    candidates = [datasets_cache / f"{org}___{name}".lower(), datasets_cache / f"{org}___{name}",
                  hub_cache.expanduser() / f"datasets--{org}--{name}"]  # fmt: skip
    return any(c.is_dir() for c in candidates)


def offline_data_error(tasks: list[str]) -> str | None:
    """One line when the Hub is off, no local data is given and a task's hub dataset is not cached."""
    if not hub_offline() or os.environ.get(DATA_ENV):
        return None
    for task in tasks:
        family = task_family(task)
        if family and not hub_cached(family):
            return (f"--task {task} reads the hub dataset {HUB[family][0]}, which is not cached, and the Hub is "
                    f"offline (HF_HUB_OFFLINE); give --data FILE|FOLDER in its schema (`mgpo data synth --out d` "
                    f"writes one), or go online")  # fmt: skip
    return None


class TaskDataError(SystemExit):
    """A task's data cannot be read (one line). Raised from process_docs as a SystemExit because lmms-eval retries
    any Exception there (tenacity, 5 times) and then hides the message in a RetryError; a SystemExit is not retried,
    the plain lmms-eval command prints it as one line, and `mgpo eval` turns it back into its MgpoError."""

    def __init__(self, error: MgpoError):
        super().__init__(f"error: {error}")
        self.error = error


def build_docs(
    family: str, category: str | None = None, data: str | Path | None = None, shuffle_options: int | None = None
):
    """The docs of a benchmark (local from ``data``, else the hub), read by mgpo.benchmarks, filtered, maybe
    shuffled with the seed ``shuffle_options``. Unset values fall back to the user's MGPO_DATA /
    MGPO_SHUFFLE_OPTIONS (the plain lmms-eval command). A row that cannot be read is one MgpoError naming the row and
    the column."""
    import datasets

    hub_path, hub_name, hub_split = HUB[family]
    seed = shuffle_options if shuffle_options is not None else os.environ.get(SHUFFLE_ENV)
    shuffle = (lambda r: benchmarks.shuffle_options(r, int(seed))) if seed not in (None, "") else (lambda r: r)
    local = data or os.environ.get(DATA_ENV)
    if local:
        records, base = D.read_local_records(local)
        docs = [D.to_doc(shuffle(r), base) for r in records if not category or r.category == category]
        return datasets.Dataset.from_list(docs)
    try:
        hub = datasets.load_dataset(hub_path, hub_name, split=hub_split)
    except Exception as exc:  # offline, no cache, no access: one line with the way out, not the loader's traceback
        raise MgpoError(
            f"cannot load the hub dataset {hub_path} ({one_line(exc)}); give --data FILE|FOLDER in its schema "
            "(`mgpo data synth --out d` writes one), or check the network"
        ) from exc
    schema = benchmarks.detect_schema(hub.column_names, hub_path)
    if category:
        hub = hub.filter(lambda r: r.get("category") == category)

    for column, feature in hub.features.items():
        if isinstance(feature, datasets.Image):  # the encoded bytes, decoded by mgpo's loader when the sample runs
            hub = hub.cast_column(column, datasets.Image(decode=False))

    def one(row: dict[str, Any], index: int) -> dict[str, Any]:
        return D.to_doc(shuffle(benchmarks.read_row(schema, row, index)))

    features = datasets.Features(
        {
            "question_id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.Sequence(datasets.Value("string")),
            "answer": datasets.Value("string"),
            "category": datasets.Value("string"),
            "gt_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
            "option_order": datasets.Sequence(datasets.Value("int64")),
            "image_path": datasets.Value("string"),
            "image_error": datasets.Value("string"),
            "image_bytes": datasets.Value("binary"),
            "image": datasets.Image(),
        }
    )
    # base64 columns (MME-RealWorld, HR-Bench) are decoded once here into bytes, then dropped
    return hub.map(one, with_indices=True, remove_columns=hub.column_names, features=features)


def _docs(family: str, category: str | None = None, **settings):
    try:
        return build_docs(family, category, **settings)
    except MgpoError as exc:
        raise TaskDataError(exc) from exc


def process_vstar(dataset, **settings):
    return _docs("vstar", **settings)


def process_vstar_attr(dataset, **settings):
    return _docs("vstar", "direct_attributes", **settings)


def process_vstar_pos(dataset, **settings):
    return _docs("vstar", "relative_position", **settings)


def process_mmerw(dataset, **settings):
    return _docs("mmerw", **settings)


def process_mmerw_lite(dataset, **settings):
    return _docs("mmerw_lite", **settings)


def process_mmerw_cn(dataset, **settings):
    return _docs("mmerw_cn", **settings)


def process_hrbench4k(dataset, **settings):
    return _docs("hrbench4k", **settings)


def process_hrbench8k(dataset, **settings):
    return _docs("hrbench8k", **settings)


# ---------------------------------------------------------------------------------------------------------------
# Prompt (for models other than mgpo's, which build their own multi-turn prompts from the doc) and scoring


def doc_image(doc: dict[str, Any]) -> Image.Image | bytes | str:
    """The doc's image: the in-memory one, else its embedded bytes, else its file path."""
    image = doc.get("image")
    if isinstance(image, Image.Image):
        return image
    embedded = doc.get("image_bytes")
    return embedded if embedded is not None else doc["image_path"]


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    image = doc_image(doc)
    if not isinstance(image, Image.Image):
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as im:
            image = im.convert("RGB")
    return [image.convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    choices = protocol.choices_block(list(doc["options"]))
    return f"{protocol.question_line(doc['question'])} {choices}{ANSWER_INSTRUCTION}"


def doc_to_target(doc: dict[str, Any]) -> str:
    return doc["answer"]


def score(doc: dict[str, Any], response: str) -> dict[str, Any]:
    """One doc's scored item: the mgpo model's own score when the response carries it (so lmms-eval agrees with
    results.json under any --scoring), else the paper's rule on the response as the final turn (stock models)."""
    carried = getattr(response, "score", None)
    if not isinstance(carried, Score):
        carried = score_response([response or ""], doc["answer"], list(doc["options"]), ProtocolConfig.paper())
    return {
        "question_id": doc["question_id"],
        "category": doc["category"],
        "prediction": carried.answer,
        "source": carried.source,
        "ground_truth": doc["answer"],
        "score": int(bool(carried.correct)),
    }


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Overall accuracy plus the doc's own category key (lmms-eval aggregates each key separately)."""
    item = score(doc, results[0] if results else "")
    if "/" in doc["category"]:  # MME-RealWorld: 'accuracy' aggregates to the macro mean, this one to the micro
        return {"accuracy": item, "micro_accuracy": item}
    return {"accuracy": item, doc["category"]: item}


def _pairs(items: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    # an item without a ground truth is unscored, not wrong (metrics.summarise_scores)
    return [(i["category"], i["score"] if i.get("ground_truth") else None) for i in items]


def aggregate_accuracy(items: list[dict[str, Any]]) -> float:
    """Micro accuracy in percent (the one metrics path results.json and `mgpo compare` use)."""
    value = summarise_scores(_pairs(items))["overall"]["accuracy"]
    return math.nan if value is None else value


def aggregate_macro(items: list[dict[str, Any]]) -> float:
    """MME-RealWorld overall: the macro (unweighted) mean of the sub-category accuracies, in percent."""
    value = summarise_scores(_pairs(items), macro=True)["overall"]["accuracy"]
    return math.nan if value is None else value
