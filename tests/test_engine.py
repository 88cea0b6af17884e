"""The engine's loop: turn-by-turn batches, stopping rules, iterative zoom, and trajectory I/O."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from mgpo.backends.scripted import ScriptedBackend
from mgpo.engine import Engine
from mgpo.protocol import ProtocolConfig
from mgpo.types import Sample, Trajectory, read_trajectories, write_jsonl


def box_text(box: list[int], label: str = "x") -> str:
    return f"```json\n{json.dumps([{'bbox_2d': box, 'label': label}])}\n```"


class Counting(ScriptedBackend):
    """Scripted backend that records each call's batch."""

    def __init__(self, responses):
        super().__init__(responses)
        self.calls: list[list[tuple[int, int]]] = []

    def generate(self, requests):
        self.calls.append([(r.sample_index, r.turn) for r in requests])
        return super().generate(requests)


def test_batch_runs_turn_by_turn() -> None:
    samples = [Sample(Image.new("RGB", (1000, 800)), f"q{i}?", ["a", "b"], "A") for i in range(4)]
    backend = Counting([{"turns": [box_text([10, 10, 300, 300]), "\\boxed{A}"]}] * 4)
    trajs = Engine(backend).run(samples)
    assert backend.calls == [[(i, 0) for i in range(4)], [(i, 1) for i in range(4)]]
    assert all(t.correct for t in trajs)


def test_turn_two_runs_even_if_turn_one_answered() -> None:
    backend = Counting([{"turns": ["It is \\boxed{B}", "\\boxed{A}"]}])
    traj = Engine(backend).run([Sample(Image.new("RGB", (500, 500)), "q?", ["a", "b"], "A")])[0]
    assert len(traj.turns) == 2 and traj.turns[0].fallback is not None
    assert traj.answer == "A"  # the LAST \boxed{} of the response


def test_iterative_zoom_maps_each_box_from_the_latest_image() -> None:
    cfg = ProtocolConfig.paper(max_turns=3)
    # 4000x3000 -> frame 1148x868. Turn-1 box [287, 217, 861, 651] is the middle half: original [1000, 750, 3000,
    # 2250]. That 2000x1500 crop is pre-resized to 1156x867 -> frame 1148x868 again; its bottom-right quarter
    # [574, 434, 1148, 868] is original [2000, 1500, 3000, 2250]: the crop's offset (1000, 750) added to 1000x750.
    # (Boxes away from the origin: a mapping that forgot the previous crop's offset would give [1000, 750, 2000,
    # 1500].)
    backend = Counting([{"turns": [box_text([287, 217, 861, 651]), box_text([574, 434, 1148, 868]), "\\boxed{B}"]}])
    traj = Engine(backend, cfg).run([Sample(Image.new("RGB", (4000, 3000)), "q?", ["a", "b"], "B")])[0]
    assert [t.box_original for t in traj.turns] == [[1000, 750, 3000, 2250], [2000, 1500, 3000, 2250], None]
    assert [t.shown_box for t in traj.turns] == [[0, 0, 4000, 3000], [1000, 750, 3000, 2250], [2000, 1500, 3000, 2250]]
    assert [t.frame_size for t in traj.turns[:2]] == [[1148, 868], [1148, 868]]
    assert "JSON format" in traj.turns[1].prompt  # intermediate turns may ask for another box
    assert "instead output the coordinates" not in traj.turns[2].prompt  # the last turn must answer
    assert traj.correct is True


def test_sample_stops_when_it_answers_before_max_turns() -> None:
    cfg = ProtocolConfig.paper(max_turns=4)
    responses = [
        {"turns": [box_text([0, 0, 300, 300]), "\\boxed{A}", "never asked", "never asked"]},
        {"turns": [box_text([0, 0, 300, 300]), box_text([0, 0, 300, 300]), "\\boxed{B}", "never asked"]},
    ]
    backend = Counting(responses)
    samples = [Sample(Image.new("RGB", (1000, 1000)), "q?", ["a", "b"], "A") for _ in range(2)]
    trajs = Engine(backend, cfg).run(samples)
    assert [len(t.turns) for t in trajs] == [2, 3]
    assert backend.calls == [[(0, 0), (1, 0)], [(0, 1), (1, 1)], [(1, 2)]]


def test_direct_preset_is_single_turn() -> None:
    backend = Counting([{"turns": ["\\boxed{B}"]}])
    traj = Engine(backend, ProtocolConfig.direct()).run([Sample(Image.new("RGB", (500, 500)), "q", ["a", "b"], "B")])[0]
    assert len(traj.turns) == 1 and traj.system_prompt is None and traj.correct is True
    assert traj.turns[0].prompt.startswith("<image>Question: q. The choices are listed below:\n(A) a\n(B) b\n")


def test_trajectories_round_trip_through_jsonl(tmp_path: Path) -> None:
    backend = ScriptedBackend([{"turns": [box_text([10, 10, 300, 300]), "\\boxed{A}"]}])
    traj = Engine(backend).run([Sample(Image.new("RGB", (900, 700)), "q?", ["a", "b"], "A", id="s1")])[0]
    path = tmp_path / "t.jsonl"
    write_jsonl([traj, traj], path)
    with open(path, "a") as fh:
        fh.write('{"question": "torn')  # a write cut short by a kill
    back = read_trajectories(path)
    assert len(back) == 2 and back[0] == traj
    assert Trajectory.from_dict(json.loads(traj.to_json())) == traj
    assert traj.schema_version == 2 and traj.response == "\\boxed{A}"  # the scored text, stored


def test_version_1_trajectories_still_read_their_response_from_the_final_turn() -> None:
    row = {"question": "q?", "choices": ["a", "b"], "answer": "A", "schema_version": 1,
           "turns": [{"prompt": "p", "output": "box"}, {"prompt": "p", "output": "so \\boxed{A}"}]}  # fmt: skip
    traj = Trajectory.from_dict(row)
    assert traj.response == "so \\boxed{A}" and traj.schema_version == 1
    assert Trajectory.from_dict({**row, "turns": []}).response == ""


def test_samples_run_in_chunks_of_the_batch_size_with_their_global_index() -> None:
    samples = [Sample(Image.new("RGB", (600, 500)), f"q{i}?", ["a", "b"], "A") for i in range(5)]
    backend = Counting([{"turns": [box_text([10, 10, 300, 300]), f"\\boxed{{{'AB'[i % 2]}}}"]} for i in range(5)])
    done: list[int] = []
    trajs = Engine(backend).run(samples, on_done=lambda i, t: done.append(i), batch_size=2)
    # one backend call per turn per chunk; position-keyed responses still match across chunks
    assert backend.calls == [[(0, 0), (1, 0)], [(0, 1), (1, 1)], [(2, 0), (3, 0)], [(2, 1), (3, 1)], [(4, 0)], [(4, 1)]]
    assert sorted(done) == list(range(5)) and [t.correct for t in trajs] == [True, False, True, False, True]


class TokenCounts(ScriptedBackend):
    """Scripted turns reported with fixed token counts, as a counting backend (hf, vllm, openai) reports them."""

    def __init__(self, responses, prompt_tokens: list[int], output_tokens: list[int]):
        super().__init__(responses)
        self.prompt_tokens, self.output_tokens = prompt_tokens, output_tokens
        self.budgets: list[int | None] = []

    def generate(self, requests):
        out = super().generate(requests)
        for req, gen in zip(requests, out, strict=True):
            self.budgets.append(req.max_new_tokens)
            gen.prompt_tokens, gen.output_tokens = self.prompt_tokens[req.turn], self.output_tokens[req.turn]
        return out


def test_total_cap_cuts_the_final_turn_and_scores_it_0() -> None:
    image = Image.new("RGB", (600, 500), (120, 90, 60))
    turns = [{"turns": [box_text([10, 10, 200, 200]), "\\boxed{A}"]}]
    cfg = ProtocolConfig.paper(max_response_tokens=50)
    # the response: turn 1 (10) + the turn-2 message (25) + turn 2 = 135 - 100 + turn 2's tokens
    for turn2_tokens, cut in ((15, False), (16, True)):
        backend = TokenCounts(turns, prompt_tokens=[100, 135], output_tokens=[10, turn2_tokens])
        traj = Engine(backend, cfg).run_one(Sample(image, "q?", ["a", "b"], "A"))
        assert traj.correct is (not cut) and (traj.answer_source == "cut") is cut
        assert backend.budgets == [None, 40]  # turn 2 may not run past 50 - 10 tokens
    uncapped = TokenCounts(turns, prompt_tokens=[100, 135], output_tokens=[10, 16])
    assert Engine(uncapped, ProtocolConfig.paper(max_response_tokens=0)).run_one(Sample(image, "q?", [], "A")).correct
