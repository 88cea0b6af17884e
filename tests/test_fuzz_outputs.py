"""Fuzzing at scale: seeded, structured mutations of real model outputs (broken JSON, huge numbers, unicode, nested
fences, control characters, 100 kB texts, markup, deep nesting) through the engine (the scripted backend drives
the Episode), the scorer, the trajectory record, the terminal view and the HTML export: 0 crashes.

"Crash" is any exception out of those, and any sample the engine had to record as an failed error (a bug it
caught). The suite runs MGPO_FUZZ_N outputs per protocol policy, two policies (default 300, about 25 s);
MGPO_FUZZ_N=5000 (10,000 outputs, 9,744 of them distinct) is the full run; `pytest -s` prints the counts.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from mgpo.engine import build_engine
from mgpo.protocol import ProtocolConfig
from mgpo.scoring import score_response
from mgpo.types import Sample, Trajectory
from mgpo.view import as_records, render_trajectory
from mgpo.view.export_html import page

MAX_CHARS = 150_000  # the longest output generated: beyond a 100 kB text
FUZZ_N = int(os.environ.get("MGPO_FUZZ_N", "300"))
SMALL = {"min_pixels": 3136, "max_pixels": 50176, "crop_min_pixels": 3136, "crop_max_pixels": 50176}
POLICIES = {
    "paper": ProtocolConfig.paper(**SMALL),
    # every other branch at once: lenient parsing, clamped boxes, letter scoring, 0-1000 coordinates, a third turn
    "lenient": ProtocolConfig.paper(
        parsing="lenient", box_policy="clamp", scoring="letter", coords="normalized-1000", max_turns=3, **SMALL
    ),
}

# what Qwen2.5-VL and its peers really write on turn 1 (boxes) and on the final turn (answers)
BOX_TURNS = [
    '```json\n[{"bbox_2d": [100, 100, 400, 400], "label": "target"}]\n```',
    '```json\n[\n  {"bbox_2d": [12, 30, 200, 180], "label": "the red cup"}\n]\n```',
    '```json\n[{"bbox_2d": [50, 60, 250, 260], "label": "sign"}, {"bbox_2d": [1, 2, 90, 95], "label": "b"}]\n```',
    'The cup is here: {"bbox_2d": [40, 40, 160, 150], "label": "cup"}',
    "[{'bbox_2d': [10, 20, 120, 130], 'label': 'x'}]",
    "I think the region is [50, 60, 250, 260].",
    "<|box_start|>(10,20),(300,400)<|box_end|>",
    '```\n[{"bbox_2d": [0, 0, 223, 223]}]\n```',
    "I cannot find the object in this image.",
]
ANSWER_TURNS = [
    "The cup is red. \\boxed{A}",
    "\\boxed{B}",
    "Answer: C",
    "(D) purple",
    "\\boxed{\\text{A}}",
    "After zooming in, the answer is \\boxed{(B) orange}.",
    "The answer is C.",
    "",
]
ODD_TEXT = ["\x00", "\x1b[31m", "\x1b]8;;http://x\x07", "\r", "\b", "\u202e", "\u200b", "\ufeff", "\ufffd", "é",
            "🦜", "\U0001f9ff\u200d", "Z\u0351\u0352\u0353", "\ud800", "\udfff", "[bold]", "[/]", "[link=x]",
            "<script>alert(1)</script>", "&amp;", "{", "}", "[", "]", "```", "```json\n", "\n```", '"', "\\",
            "\\boxed{", "\\boxed{}", "}}}", "\t", "\u2028", "ﬁ"]  # fmt: skip
HUGE = ["9" * 500, "-" + "9" * 500, "1e308", "-1e309", "NaN", "Infinity", "-0", "0.0000001", "1" * 20, "3.5",
        "true", "null", '"100"', "[100]", "{}", "1_000", "0x10", "٣"]  # fmt: skip


def _numbers(text: str, rng: random.Random) -> str:
    spans = [m.span() for m in re.finditer(r"-?\d+", text)]
    if not spans:
        return text + rng.choice(HUGE)
    start, end = rng.choice(spans)
    return text[:start] + rng.choice(HUGE) + text[end:]


def _truncate(text: str, rng: random.Random) -> str:
    return text[: rng.randint(0, len(text))] if text else text


def _insert(text: str, rng: random.Random) -> str:
    at = rng.randint(0, len(text))
    return text[:at] + "".join(rng.choice(ODD_TEXT) for _ in range(rng.randint(1, 4))) + text[at:]


def _delete(text: str, rng: random.Random) -> str:
    if not text:
        return text
    at = rng.randrange(len(text))
    return text[:at] + text[at + rng.randint(1, 5) :]


def _fences(text: str, rng: random.Random) -> str:
    depth = rng.randint(1, 4)
    tags = ["json", "", "JSON", "python", "json "]
    out = text
    for _ in range(depth):
        out = f"```{rng.choice(tags)}\n{out}\n```" if rng.random() < 0.8 else f"```json\n{out}"
    return out


def _huge_text(text: str, rng: random.Random) -> str:
    filler = rng.choice(["a", "word ", "\\boxed{A} ", '{"bbox_2d": [', "🦜", "\n", "```json\n"])
    body = (filler * (100_000 // len(filler) + 1))[:100_000]
    return rng.choice([body + text, text + body, body])


def _nesting(text: str, rng: random.Random) -> str:
    depth = rng.choice([10, 500, 5000])
    kind = rng.choice(["[", '{"a":'])
    closer = "]" if kind == "[" else "}"
    return f"```json\n{kind * depth}1{closer * depth}\n```" + text


def _shape(text: str, rng: random.Random) -> str:
    return rng.choice(
        [
            text.replace("bbox_2d", rng.choice(["bbox", "box_2d", "BBOX_2D", "bbox_2d\u200b", ""])),
            text.replace("[", "(").replace("]", ")"),
            text.replace('"label"', '"label": 1, "x"'),
            re.sub(
                r"\[(\d+), (\d+), (\d+), (\d+)\]",
                lambda m: rng.choice(
                    [
                        "[1, 2]",
                        "[1, 2, 3, 4, 5]",
                        f"[{m[3]}, {m[4]}, {m[1]}, {m[2]}]",
                        "[true, false, true, true]",
                        f'["{m[1]}", "{m[2]}", "{m[3]}", "{m[4]}"]',
                        "[[1, 2], [3, 4]]",
                        "[0, 0, 0, 0]",
                    ]
                ),
                text,
            ),
            text * rng.randint(2, 50),
            text.upper(),
            text.encode("utf-8", "replace").decode("latin-1"),
        ]
    )


MUTATIONS: list[Callable[[str, random.Random], str]] = [_numbers, _truncate, _insert, _delete, _fences, _huge_text,
                                                        _nesting, _shape]  # fmt: skip


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        mutation = rng.choice(MUTATIONS)
        if mutation is _huge_text and rng.random() < 0.8:  # 100 kB texts: some, not most (they cost time)
            mutation = _insert
        text = mutation(text, rng)[:MAX_CHARS]
    return text


def outputs(n: int, seed: int, turns: int) -> list[list[str]]:
    """n seeded model outputs, each a list of turns: box turns then an answer turn, every one maybe mutated."""
    rng = random.Random(seed)
    return [[mutate(rng.choice(BOX_TURNS if t < turns - 1 else ANSWER_TURNS), rng) for t in range(turns)]
            for _ in range(n)]  # fmt: skip


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "scene.png"
    image = Image.new("RGB", (640, 480), (200, 190, 170))
    image.paste((30, 60, 200), (300, 200, 360, 260))
    image.save(path)
    return path


@pytest.mark.parametrize("policy", list(POLICIES))
def test_mutated_outputs_never_crash(policy: str, picture: Path) -> None:
    cfg = POLICIES[policy]
    generated = outputs(FUZZ_N, seed=sum(map(ord, policy)), turns=cfg.max_turns)
    engine = build_engine("scripted", responses=[{"turns": t} for t in generated], protocol=cfg)
    choices = ["red", "blue", "green", "white"]
    original = Image.open(picture).convert("RGB")
    samples = [Sample(original, f"What colour is the square? #{i}", choices, "ABCD"[i % 4], id=f"s{i}")
               for i in range(FUZZ_N)]  # fmt: skip
    trajectories: list[Trajectory] = []
    failed: list[str] = []

    def on_done(i: int, traj: Trajectory) -> None:
        trajectories.append(traj)
        if traj.error_kind == "internal" or traj.error:
            failed.append(f"sample {i}: {traj.error} <- {generated[i]!r:.300}")

    engine.run(samples, on_done=on_done, batch_size=64)
    assert len(trajectories) == FUZZ_N
    distinct = len({tuple(t) for t in generated})
    assert distinct >= 0.9 * FUZZ_N  # the seeded mutations make nearly every output a new one
    assert failed == [], f"{len(failed)} crash(es), first: {failed[0]}"

    console = Console(file=io.StringIO(), width=100, color_system="truecolor", force_terminal=True)
    for i, traj in enumerate(trajectories):
        turns = [t.output for t in traj.turns]
        score_response(turns, traj.ground_truth, traj.choices, cfg)  # the scorer alone, on the raw turns
        again = Trajectory.from_dict(json.loads(traj.to_json()))  # the record round-trips
        assert [t.output for t in again.turns] == turns
        view = render_trajectory(again, original if i % 10 == 0 else None, width=100)
        console.print(view)
        assert again.question in console.file.getvalue()  # the view shows this sample
        console.file.seek(0)
        console.file.truncate()
    for start in range(0, len(trajectories), 250):  # the HTML page of every record, 250 to a page
        chunk = trajectories[start : start + 250]
        html = page(as_records(chunk), f"fuzz {policy}")
        assert html.count("<section class='card") == len(chunk)
    # the count the full run is quoted by (`pytest -s`): MGPO_FUZZ_N per policy, two policies
    print(
        f"\nfuzz {policy}: {len(trajectories)} outputs ({distinct} distinct, {cfg.max_turns} turns each) through "
        "the engine, scorer, record, terminal view and HTML export; 0 crashes"
    )
