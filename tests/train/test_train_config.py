"""Settings: presets, YAML and flags onto TRL's configs."""

from __future__ import annotations

import pytest

from mgpo.errors import MgpoError
from mgpo.train.config import PAPER_TRL, make_config, parse_settings


def test_paper_preset_is_the_papers_recipe():
    cfg = make_config(preset="paper", data="d")
    assert cfg.trl["learning_rate"] == 1e-6 and cfg.trl["num_generations"] == 8 and cfg.trl["beta"] == 0.01
    assert (
        cfg.trl["loss_type"] == "dapo" and cfg.trl["temperature"] == 1.0 and cfg.trl["max_completion_length"] == 12192
    )
    assert cfg.turn_max_new_tokens == 8192
    proto = cfg.protocol_config()
    assert (proto.min_pixels, proto.max_pixels) == (200_704, 1_003_520) and not proto.single_turn


def test_precedence_yaml_over_preset_flags_over_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "preset: paper\nlearning_rate: 2e-6\nsave_strategy: no\nbeta: 0.0\nmax-pixels: 500000\nlora: true\n"
        "warmup_steps: 5\n"
    )
    cfg = make_config(path, trl={"beta": 0.02})
    assert cfg.trl["save_strategy"] == "no"
    assert cfg.trl["learning_rate"] == 2e-6 and cfg.trl["beta"] == 0.02 and cfg.trl["warmup_steps"] == 5
    assert cfg.trl["num_generations"] == PAPER_TRL["num_generations"]
    assert cfg.lora and cfg.protocol_config().max_pixels == 500_000


def test_grpo_and_sft_use_the_direct_prompt():
    assert make_config(algo="grpo").protocol_config().single_turn
    assert make_config(algo="sft").protocol_config().single_turn


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algo": "ppo"}, "unknown --algo"),
        ({"preset": "fast"}, "unknown --preset"),
        ({"trl": {"num_genrations": 4}}, "unknown TRL setting"),
        ({"algo": "sft", "trl": {"num_generations": 4}}, "unknown TRL setting"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(MgpoError, match=message):
        make_config(**kwargs)


def test_unknown_yaml_key_names_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learnin_rate: 1\n")
    with pytest.raises(MgpoError, match="'learnin_rate'"):
        make_config(path)


def test_set_values_are_yaml():
    assert parse_settings(["warmup_steps=10", "report_to=[wandb]", "bf16=false", "save_strategy=no", "lr=1e-6"]) == {
        "warmup_steps": 10, "report_to": ["wandb"], "bf16": False, "save_strategy": "no", "lr": 1e-6}  # fmt: skip
    with pytest.raises(MgpoError):
        parse_settings(["novalue"])
