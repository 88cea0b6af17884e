"""`mgpo eval` in-process with the scripted backend (responses keyed by sample id): exact accuracy, option
shuffling, failing samples, and the crop ablation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mgpo import benchmarks
from mgpo.eval import docs as D
from mgpo.eval.run_log import read_rows
from mgpo.eval.runner import EvalOptions, run_eval
from mgpo.types import read_trajectories

SEED = 3


def _opts(data: Path, out: Path, responses: Path, **kw) -> EvalOptions:
    return EvalOptions(tasks=["mgpo_vstar"], output_dir=out, data=data, model="unused", backend="scripted",
                       responses=responses, **kw)  # fmt: skip


def test_seven_of_ten_is_exactly_70(synth_dir: Path, tmp_path: Path, responses_for) -> None:
    responses = responses_for(tmp_path / "r.jsonl", synth_dir, n_correct=7)
    results = run_eval(_opts(synth_dir, tmp_path / "o", responses, limit=10))
    task = results["tasks"]["mgpo_vstar"]
    assert task["overall"]["accuracy"] == 70.0
    assert task["lmms_eval"]["accuracy,none"] == 70.0  # lmms-eval's own aggregate agrees
    assert sum(c["n"] for c in task["categories"].values()) == 10
    assert task["grounding"]["valid_box_ratio"] == 1.0 and task["grounding"]["iou"] is not None
    assert task["cost"]["mean_turns"] == 2.0
    rows = read_rows(tmp_path / "o" / "trajectories.jsonl")
    assert len(rows) == 10 and sum(r["correct"] for r in rows) == 7
    for row in rows:
        assert Path(row["trajectory"]["image_path"]).is_file()
        assert row["trajectory"]["turns"][0]["box_original"] is not None
        # the scored text is stored, and it is what lmms-eval was given
        assert row["trajectory"]["response"] == row["response"] == row["trajectory"]["turns"][-1]["output"]
    assert (tmp_path / "o" / "lmms_eval" / "grounded" / "samples_mgpo_vstar.jsonl").is_file()
    trajectories = read_trajectories(tmp_path / "o" / "trajectories.jsonl")  # what `mgpo show` reads
    assert len(trajectories) == 10 and all(t.image_path and t.turns for t in trajectories)


def test_shuffle_options_remaps_ground_truth(synth_dir: Path, tmp_path: Path, responses_for) -> None:
    responses = responses_for(tmp_path / "r.jsonl", synth_dir, n_correct=10)  # answers the unshuffled letter
    results = run_eval(_opts(synth_dir, tmp_path / "o", responses, shuffle_options=SEED, limit=8))
    records = D.read_local_records(synth_dir)[0][:8]
    shuffled = [benchmarks.shuffle_options(r, SEED) for r in records]
    expected = 100 * sum(s.answer == r.answer for s, r in zip(shuffled, records, strict=True)) / len(shuffled)
    assert 0 < expected < 100  # the seed really moved some correct options
    assert results["tasks"]["mgpo_vstar"]["overall"]["accuracy"] == pytest.approx(expected)
    orders = results["option_orders"]["mgpo_vstar"]
    assert orders == {s.id: s.option_order for s in shuffled}


def test_failing_sample_is_recorded_and_scored_wrong(synth_dir: Path, tmp_path: Path, responses_for) -> None:
    responses = responses_for(tmp_path / "r.jsonl", synth_dir, n_correct=10)
    first = pd.read_parquet(synth_dir / "test.parquet").question_id[0]
    lines = [x for x in responses.read_text().splitlines() if json.loads(x)["id"] != first]
    responses.write_text("\n".join(lines) + "\n")  # sample 0 has no scripted answer: a backend error
    results = run_eval(_opts(synth_dir, tmp_path / "o", responses, limit=4))
    task = results["tasks"]["mgpo_vstar"]
    assert task["overall"]["accuracy"] == 75.0 and task["errors"]["count"] == 1
    rows = read_rows(tmp_path / "o" / "trajectories.jsonl")
    failed = [r for r in rows if r["trajectory"]["error"]]
    assert len(rows) == 4 and len(failed) == 1 and failed[0]["correct"] is False


def test_ablation_and_repeats(synth_dir: Path, tmp_path: Path, box_turn: str) -> None:
    path = tmp_path / "r.jsonl"
    frame = pd.read_parquet(synth_dir / "test.parquet")
    # grounded turns answer right; the direct run's single turn gets the box text and so never answers
    lines = [{"id": r.question_id, "turns": [box_turn, f"\\boxed{{{r.label}}}"]} for r in frame.itertuples()]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    results = run_eval(_opts(synth_dir, tmp_path / "o", path, limit=2, ablate=True, repeats=2))
    task = results["tasks"]["mgpo_vstar"]
    assert task["overall"]["accuracy"] == 100.0
    assert task["avg_at_k"]["k"] == 2 and task["avg_at_k"]["avg"] == 100.0
    abl = task["ablation"]
    assert abl["paired"] == 4 and abl["direct"]["accuracy"] == 0.0 and abl["gained_with_crop"] == 4
    assert len(read_rows(tmp_path / "o" / "trajectories.jsonl")) == 8  # 2 docs x 2 repeats x 2 modes


def test_existing_run_needs_resume(synth_dir: Path, tmp_path: Path) -> None:
    from mgpo.errors import MgpoError

    out = tmp_path / "o"
    out.mkdir()
    (out / "trajectories.jsonl").write_text('{"task": "mgpo_vstar", "doc_id": 0}\n')
    with pytest.raises(MgpoError, match="--resume"):
        run_eval(_opts(synth_dir, out, tmp_path / "r.jsonl"))


def test_the_direct_ablation_scores_and_opens_images_like_the_grounded_run() -> None:
    from mgpo.eval.runner import _pipeline
    from mgpo.protocol import ProtocolConfig

    grounded = ProtocolConfig.paper(scoring="letter", image_mode="upright", max_response_tokens=4000)
    direct = ProtocolConfig.direct(**_pipeline(grounded))
    assert (direct.scoring, direct.image_mode, direct.max_response_tokens) == ("letter", "upright", 4000)


def test_pillows_bomb_guard_is_unchanged_after_a_threaded_eval(synth_dir: Path, tmp_path: Path, responses_for,
                                                               monkeypatch) -> None:  # fmt: skip
    """Images decode on several threads while mgpo lifts Pillow's own limit; the guard is back afterwards."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 123_456_789)  # a value no code path would restore by accident
    responses = responses_for(tmp_path / "r.jsonl", synth_dir, n_correct=10)
    run_eval(_opts(synth_dir, tmp_path / "o", responses, limit=10, batch_size=5))
    assert Image.MAX_IMAGE_PIXELS == 123_456_789
