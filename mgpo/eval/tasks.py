"""The functions behind the lmms-eval task YAMLs in ``tasks/`` (their utils.py only re-exports these).

Data source: the hub dataset by default; with ``MGPO_DATA=PATH`` in the environment (what ``mgpo eval --data`` sets),
a local parquet / JSONL file or folder in the same schema, read without network. ``MGPO_SHUFFLE_OPTIONS=SEED``
permutes options per sample reproducibly. Scoring is mgpo.scoring's, the function training's reward uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from mgpo import protocol
from mgpo.eval import docs as D
from mgpo.eval.metrics import macro_accuracy, mean_percent
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

# task family -> (hub path, hub config name, hub split, normaliser)
HUB = {
    "vstar": ("lmms-lab-encoder/vstar-bench", None, "test", "vstar"),
    "mmerw": ("yifanzhang114/MME-RealWorld-Lmms-eval", None, "train", "mmerw"),
    "mmerw_lite": ("yifanzhang114/MME-RealWorld-lite-lmms-eval", None, "train", "mmerw"),
    "mmerw_cn": ("yifanzhang114/MME-RealWorld-CN-Lmms-eval", None, "train", "mmerw"),
    "hrbench4k": ("DreamMr/HR-Bench", "hrbench_version_split", "hrbench_4k", "hrbench"),
    "hrbench8k": ("DreamMr/HR-Bench", "hrbench_version_split", "hrbench_8k", "hrbench"),
}


def build_docs(family: str, category: str | None = None):
    """The normalised docs of a benchmark (local with MGPO_DATA, else the hub), filtered and maybe shuffled."""
    import datasets

    hub_path, hub_name, hub_split, benchmark = HUB[family]
    seed = os.environ.get(SHUFFLE_ENV)
    local = os.environ.get(DATA_ENV)
    if local:
        rows, base = D.read_local_rows(local)
        docs = [D.normalise(r, benchmark, base) for r in rows]
        if category:
            docs = [d for d in docs if d["category"] == category]
        if seed not in (None, ""):
            docs = [D.shuffle_options(d, int(seed)) for d in docs]
        return datasets.Dataset.from_list(docs)
    hub = datasets.load_dataset(hub_path, hub_name, split=hub_split)
    if category:
        hub = hub.filter(lambda r: r.get("category") == category)

    def one(row: dict[str, Any]) -> dict[str, Any]:
        doc = D.normalise(row, benchmark)
        if seed not in (None, ""):
            doc = D.shuffle_options(doc, int(seed))
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
            "image": datasets.Image(),
        }
    )
    # base64 columns (MME-RealWorld, HR-Bench) are decoded once here into an Image column, then dropped
    return hub.map(one, remove_columns=hub.column_names, features=features)


def process_vstar(dataset):
    return build_docs("vstar")


def process_vstar_attr(dataset):
    return build_docs("vstar", "direct_attributes")


def process_vstar_pos(dataset):
    return build_docs("vstar", "relative_position")


def process_mmerw(dataset):
    return build_docs("mmerw")


def process_mmerw_lite(dataset):
    return build_docs("mmerw_lite")


def process_mmerw_cn(dataset):
    return build_docs("mmerw_cn")


def process_hrbench4k(dataset):
    return build_docs("hrbench4k")


def process_hrbench8k(dataset):
    return build_docs("hrbench8k")


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


def aggregate_accuracy(items: list[dict[str, Any]]) -> float:
    """Accuracy in percent."""
    return mean_percent([i["score"] for i in items])


def aggregate_macro(items: list[dict[str, Any]]) -> float:
    """MME-RealWorld overall: the unweighted mean of the sub-category accuracies, in percent."""
    return macro_accuracy([(i["category"], i["score"]) for i in items])
