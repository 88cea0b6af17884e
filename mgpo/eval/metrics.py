"""Evaluation metrics over trajectory rows: accuracy with 95% intervals, per category, MME-RealWorld's macro mean,
Avg@k, grounding quality (valid boxes, fallbacks, IoU / hit rate against ground truth), crop dependency and cost.

Accuracies are percentages, as the paper reports them. Pure functions over plain dicts; no model, no lmms-eval.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from mgpo.types import iou

Z95 = 1.959963984540054


def mean_percent(scores: Sequence[float]) -> float:
    """Mean of 0/1 scores in percent (nan for none)."""
    return 100.0 * sum(scores) / len(scores) if scores else math.nan


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score 95% interval for k successes out of n, in percent."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (round(100 * max(0.0, centre - half), 2), round(100 * min(1.0, centre + half), 2))


def accuracy(scores: Sequence[int]) -> dict[str, Any]:
    """{'accuracy': percent, 'ci95': [lo, hi], 'n': n, 'correct': k}."""
    k, n = int(sum(scores)), len(scores)
    return {"accuracy": round(mean_percent(scores), 4) if n else None, "ci95": list(wilson(k, n)), "n": n, "correct": k}


def macro_accuracy(pairs: Iterable[tuple[str, int]]) -> float:
    """Unweighted mean over categories of each category's accuracy (percent)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for category, s in pairs:
        groups[category].append(s)
    return statistics.fmean(mean_percent(v) for v in groups.values()) if groups else math.nan


MACRO_TASKS = ("mgpo_mmerw", "mgpo_mmerw_lite", "mgpo_mmerw_cn")  # overall = the paper's unweighted macro mean


def _score(row: dict[str, Any]) -> int:
    return int(bool(row.get("correct")))


def summarise_scores(pairs: Iterable[tuple[str | None, bool | int | None]], macro: bool = False) -> dict[str, Any]:
    """THE accuracy of a task, from (category, correct) pairs; results.json, `mgpo compare` and the lmms-eval
    aggregates all come from here.

    ``correct=None`` (a sample with no ground truth) is unscored: left out of every accuracy and counted under
    ``unscored``. ``overall`` is the micro mean (every sample weighs the same) unless ``macro``, where it is the
    unweighted mean of the category accuracies (MME-RealWorld's paper number) and ``micro`` holds the micro mean.
    Each accuracy says which kind it is under ``kind``.
    """
    scored: list[tuple[str, int]] = []
    unscored = 0
    for category, correct in pairs:
        if correct is None:
            unscored += 1
        else:
            scored.append((category or "uncategorised", int(bool(correct))))
    by_cat: dict[str, list[int]] = defaultdict(list)
    for category, s in scored:
        by_cat[category].append(s)
    micro = {**accuracy([s for _, s in scored]), "kind": "micro"}
    out: dict[str, Any] = {
        "overall": micro,
        "categories": {c: accuracy(v) for c, v in sorted(by_cat.items())},
        "unscored": unscored,
    }
    if macro:
        value = macro_accuracy(scored)
        out["micro"] = micro
        out["overall"] = {"accuracy": None if math.isnan(value) else round(value, 4), "n": len(scored),
                          "kind": "macro: unweighted mean of sub-categories"}  # fmt: skip
    return out


def task_accuracy(rows: list[dict[str, Any]], macro: bool = False) -> dict[str, Any]:
    """Overall and per-category accuracy of trajectory rows (see summarise_scores)."""
    return summarise_scores(((r.get("category"), r.get("correct")) for r in rows), macro=macro)


def avg_at_k(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Avg@k over repeats: the mean of each repeat's accuracy, its spread and a 95% interval of that mean (meaningful
    when the repeats sample, e.g. --sampling paper); None with a single repeat."""
    by_rep: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        if r.get("correct") is not None:  # unscored samples count in no repeat's accuracy
            by_rep[int(r.get("repeat", 0))].append(_score(r))
    if len(by_rep) < 2:
        return None
    accs = [mean_percent(v) for _, v in sorted(by_rep.items())]
    avg = statistics.fmean(accs)
    half = Z95 * statistics.stdev(accs) / math.sqrt(len(accs))  # normal interval of the mean over the k repeats
    return {"k": len(accs), "avg": round(avg, 4), "std": round(statistics.pstdev(accs), 4),
            "ci95": [round(avg - half, 2), round(avg + half, 2)],
            "per_repeat": [round(a, 4) for a in accs]}  # fmt: skip


def gt_boxes(traj: dict[str, Any]) -> list[list[float]]:
    """A trajectory's ground-truth boxes: all targets (meta) where recorded, else its single gt_box."""
    boxes = (traj.get("meta") or {}).get("gt_boxes")
    if boxes:
        return [list(b) for b in boxes]
    return [list(traj["gt_box"])] if traj.get("gt_box") else []


def _union(boxes: list[list[float]]) -> list[float]:
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _contains_centres(box: list[float], targets: list[list[float]]) -> bool:
    return all(box[0] <= (t[0] + t[2]) / 2 <= box[2] and box[1] <= (t[1] + t[3]) / 2 <= box[3] for t in targets)


def grounding(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Grounding quality of the first turn: valid-box ratio, fallback reasons, IoU and hit rate vs ground truth.

    IoU is against the union of the ground-truth boxes; a hit is a crop that contains every target's centre (the
    crop shows what the question is about). Samples without a valid box count as IoU 0 and a miss.
    """
    grounded = [r for r in rows if r["trajectory"].get("turns") and not r["trajectory"].get("protocol", {}).get(
        "single_turn")]  # fmt: skip
    valid = 0
    reasons: Counter[str] = Counter()
    ious, hits = [], []
    for r in grounded:
        first = r["trajectory"]["turns"][0]
        box = first.get("box_original")
        if box is not None:
            valid += 1
        elif len(r["trajectory"]["turns"]) > 1 or first.get("fallback"):
            reasons[(first.get("fallback") or "no second turn").split(" (")[0]] += 1
        gt = gt_boxes(r["trajectory"])
        if gt:
            ious.append(iou(box, _union(gt)) if box else 0.0)
            hits.append(int(box is not None and _contains_centres(box, gt)))
    n = len(grounded)
    out: dict[str, Any] = {
        "samples": n,
        "valid_boxes": valid,
        "valid_box_ratio": round(valid / n, 4) if n else None,
        "fallback_reasons": dict(reasons.most_common()),
        "with_gt_boxes": len(ious),
    }
    if ious:
        out["iou"] = {"mean": round(statistics.fmean(ious), 4), "median": round(statistics.median(ious), 4),
                      "ge_0.5": round(sum(i >= 0.5 for i in ious) / len(ious), 4)}  # fmt: skip
        out["hit_rate"] = round(sum(hits) / len(hits), 4)
    else:
        out["iou"], out["hit_rate"] = None, None
    return out


def cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean turns, visual and output tokens, and seconds per sample."""
    if not rows:
        return {"samples": 0}
    turns = [r["trajectory"].get("turns", []) for r in rows]
    return {
        "samples": len(rows),
        "mean_turns": round(statistics.fmean(len(t) for t in turns), 4),
        "mean_visual_tokens": round(statistics.fmean(sum(x.get("visual_tokens", 0) for x in t) for t in turns), 2),
        "mean_output_tokens": round(statistics.fmean(sum(x.get("output_tokens", 0) for x in t) for t in turns), 2),
        "seconds_per_sample": round(statistics.fmean(sum(x.get("seconds", 0.0) for x in t) for t in turns), 4),
    }


def errors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many samples failed (scored wrong), with a few of their messages."""
    failed = [r for r in rows if r["trajectory"].get("error")]
    backend = [r for r in failed if r["trajectory"].get("error_kind") == "backend"]
    return {
        "count": len(failed),
        "backend": len(backend),  # generation failures, retried by --resume
        "examples": [f"{r['doc_id']}: {r['trajectory']['error']}" for r in failed[:5]],
    }


def crop_dependency(grounded: list[dict[str, Any]], direct: list[dict[str, Any]]) -> dict[str, Any]:
    """--ablate: the same samples with grounding and with the single-turn prompt; accuracy of each and flips."""
    key = lambda r: (r["task"], r["doc_id"], r.get("repeat", 0))  # noqa: E731
    d = {key(r): r for r in direct}
    pairs = [(g, d[key(g)]) for g in grounded if key(g) in d]
    flips = Counter()
    for g, s in pairs:
        if _score(g) != _score(s):
            flips["gained_with_crop" if _score(g) else "lost_with_crop"] += 1
        if g.get("prediction") != s.get("prediction"):
            flips["answer_changed"] += 1
    return {
        "paired": len(pairs),
        "grounded": accuracy([_score(g) for g, _ in pairs]),
        "direct": accuracy([_score(s) for _, s in pairs]),
        "gained_with_crop": flips["gained_with_crop"],
        "lost_with_crop": flips["lost_with_crop"],
        "answer_changed": flips["answer_changed"],
    }


def summarise(rows: list[dict[str, Any]], macro_tasks: Iterable[str] = ()) -> dict[str, Any]:
    """Every metric per task, from trajectory rows of one mode."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    macro = set(macro_tasks)
    out = {}
    for task, trs in sorted(by_task.items()):
        first = [r for r in trs if int(r.get("repeat", 0)) == 0]
        entry = task_accuracy(first, macro=task in macro)
        entry["avg_at_k"] = avg_at_k(trs)
        entry["grounding"] = grounding(first)
        entry["cost"] = cost(trs)
        entry["errors"] = errors(trs)
        out[task] = entry
    return out
