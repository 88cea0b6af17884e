"""The functions behind the lmms-eval task YAMLs in ``tasks/`` (their utils.py only re-exports these).

Data source: the hub dataset by default, or a local parquet / JSONL file or folder in the same schema, read without
network, and options permuted per sample with a seed. ``mgpo eval`` passes both explicitly: it binds ``data`` and
``shuffle_options`` into each task's ``process_docs`` (see mgpo.eval.runner). For the literal
``lmms-eval --model mgpo`` command, which has no way to pass them, ``MGPO_DATA=PATH`` and ``MGPO_SHUFFLE_OPTIONS=SEED``
in the user's environment are read as overrides; mgpo's own code never sets them. Scoring is mgpo.scoring's, the
function training's reward uses.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo import benchmarks, protocol
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
    hub = datasets.load_dataset(hub_path, hub_name, split=hub_split)
    schema = benchmarks.detect_schema(hub.column_names, hub_path)
    if category:
        hub = hub.filter(lambda r: r.get("category") == category)

    def one(row: dict[str, Any], index: int) -> dict[str, Any]:
        doc = D.to_doc(shuffle(benchmarks.read_row(schema, row, index)))
        doc.setdefault("image", None)
        return doc

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
            "image": datasets.Image(),
        }
    )
    # base64 columns (MME-RealWorld, HR-Bench) are decoded once here into an Image column, then dropped
    return hub.map(one, with_indices=True, remove_columns=hub.column_names, features=features)


def process_vstar(dataset, **settings):
    return build_docs("vstar", **settings)


def process_vstar_attr(dataset, **settings):
    return build_docs("vstar", "direct_attributes", **settings)


def process_vstar_pos(dataset, **settings):
    return build_docs("vstar", "relative_position", **settings)


def process_mmerw(dataset, **settings):
    return build_docs("mmerw", **settings)


def process_mmerw_lite(dataset, **settings):
    return build_docs("mmerw_lite", **settings)


def process_mmerw_cn(dataset, **settings):
    return build_docs("mmerw_cn", **settings)


def process_hrbench4k(dataset, **settings):
    return build_docs("hrbench4k", **settings)


def process_hrbench8k(dataset, **settings):
    return build_docs("hrbench8k", **settings)


# ---------------------------------------------------------------------------------------------------------------
# Prompt (for models other than mgpo's, which build their own multi-turn prompts from the doc) and scoring


def doc_image(doc: dict[str, Any]) -> Image.Image | str:
    """The doc's image: the in-memory one, else its file path."""
    image = doc.get("image")
    return image if isinstance(image, Image.Image) else doc["image_path"]


def doc_to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    image = doc_image(doc)
    if isinstance(image, str):
        with Image.open(image) as im:
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
