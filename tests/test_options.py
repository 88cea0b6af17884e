"""The one option set (mgpo.options): the same flags on infer, eval and train, and the same names in lmms-eval's
model_args, converted from text and delivered to the backend constructor."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mgpo.cli import app
from mgpo.errors import MgpoError
from mgpo.eval.lmms_model import MgpoModel
from mgpo.options import ALL, IMAGES, PROTOCOL

SHARED = ("--parsing", "--coords", "--box-policy", "--resampling", "--max-turns")


@pytest.mark.parametrize("command", ["infer", "eval", "train"])
def test_every_command_lists_the_protocol_and_image_options(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for flag in (*SHARED, *(o.flag for o in (*PROTOCOL, *IMAGES))):
        assert flag in result.output, f"{command} --help lacks {flag}"
    for panel in ("Protocol", "Images"):
        assert panel in result.output


def test_train_refuses_other_turn_counts_in_one_line():
    result = CliRunner().invoke(app, ["train", "--data", "unused", "--max-turns", "3"])
    assert isinstance(result.exception, MgpoError)
    message = str(result.exception)
    assert "\n" not in message and "--max-turns 3" in message and "two-turn" in message


class Reached(Exception):
    """Raised by the stand-in constructor once it has seen its arguments (no model is loaded)."""


def test_model_args_reach_the_hf_backend_constructor(monkeypatch):
    import mgpo.backends.hf as hf

    seen: dict = {}

    def capture(self, model_id, **kwargs):
        seen.update(kwargs, model_id=model_id)
        raise Reached

    monkeypatch.setattr(hf.HFBackend, "__init__", capture)
    args = "pretrained=some/model,backend=hf,attn_implementation=sdpa,vision_cache_mb=64,sampling=paper"
    with pytest.raises(Reached):
        MgpoModel.create_from_arg_string(args)  # lmms-eval's own model_args parsing
    assert seen["model_id"] == "some/model"
    assert seen["attn_implementation"] == "sdpa"
    assert seen["vision_cache_mb"] == 64 and isinstance(seen["vision_cache_mb"], float)
    assert seen["decoding"].temperature == 1.0 and seen["decoding"].top_p == 1.0  # the paper preset


def test_model_args_convert_text_and_refuse_unknown_or_foreign_names():
    with pytest.raises(MgpoError, match="unknown mgpo model_args: colour"):
        MgpoModel.create_from_arg_string("backend=hf,colour=red")
    with pytest.raises(MgpoError, match="does not take model_args base_url"):
        MgpoModel.create_from_arg_string("backend=hf,base_url=http://x")
    with pytest.raises(MgpoError, match="max_turns must be int"):
        MgpoModel.create_from_arg_string("backend=hf,max_turns=two")
    assert ALL["check"].convert("false") is False and ALL["max_turns"].convert("3") == 3


@pytest.mark.parametrize("command", [[], ["env"], ["infer"], ["eval"], ["train"], ["show"]])
def test_help_shows_no_type_after_flags_and_a_line_for_every_option(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    from typer.main import get_command

    cmd = get_command(app)
    cmd = cmd.commands[command[0]] if command else cmd  # type: ignore[attr-defined]
    assert [p.name for p in cmd.params if getattr(p, "help", None) in (None, "") and p.name != "help"] == []


def test_train_help_names_the_default_of_every_option_mgpo_decides():
    """train's flags default to None (so --config and --preset can fill them); the help still names the default."""
    from mgpo.train.config import TrainConfig

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {ln.split()[1]: ln for ln in result.output.splitlines() if ln.strip("│ ").startswith("--")}
    defaults = TrainConfig()
    for flag, value in (("--algo", defaults.algo), ("--model", defaults.model), ("--output-dir", defaults.output_dir),
                        ("--preset", defaults.preset), ("--split", defaults.split),
                        ("--reward", defaults.rewards[0])):  # fmt: skip
        assert f"Default: {value}." in lines[flag], lines[flag]
