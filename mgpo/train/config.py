"""`mgpo train` settings: what mgpo decides (algorithm, data, protocol, LoRA) plus a pass-through dict for TRL's
GRPOConfig / SFTConfig. Precedence: defaults < preset < YAML file < command-line flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgpo.engine import DEFAULT_MODEL
from mgpo.errors import MgpoError
from mgpo.protocol import ProtocolConfig

ALGOS = ("mgpo", "grpo", "sft")
PRESETS = ("default", "paper")

# The paper's recipe (spec §4-§6) in TRL terms. The paper's batch (512 prompts x 8 rollouts, 4 updates per rollout
# step) depends on the GPUs: set per_device_train_batch_size / gradient_accumulation_steps / steps_per_generation.
PAPER_TRL: dict[str, Any] = {
    "learning_rate": 1e-6,
    "num_generations": 8,
    "beta": 0.01,  # k3 ("low_var_kl") KL loss
    "loss_type": "dapo",  # token-mean aggregation
    "scale_rewards": "group",
    "temperature": 1.0,
    "top_p": 1.0,
    "max_completion_length": 12192,  # turn 1 + turn-2 message with its image tokens + turn 2
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "epsilon": 0.2,
    "entropy_coef": 0.001,
    "num_iterations": 1,
}
PAPER_TURN_TOKENS = 8192


@dataclass
class TrainConfig:
    """Everything `mgpo train` needs; ``trl`` holds GRPOConfig/SFTConfig fields passed through unchanged."""

    algo: str = "mgpo"
    data: str = ""
    split: str = "train"
    limit: int | None = None
    model: str = DEFAULT_MODEL
    output_dir: str = "mgpo-train"
    preset: str = "default"
    protocol: dict[str, Any] = field(default_factory=dict)  # ProtocolConfig overrides (pixel limits, ...)
    rewards: list[str] = field(default_factory=lambda: ["accuracy"])
    turn_max_new_tokens: int | None = None  # per-turn cap; None: the model's generation_config, else 8192
    max_image_pixels: int | None = None
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    merge_lora: bool = True  # the final output is a full model that `mgpo infer --model` loads as is
    resume_from_checkpoint: str | None = None
    trl: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise MgpoError(f"unknown --algo {self.algo!r}; use one of: {', '.join(ALGOS)}")
        if self.preset not in PRESETS:
            raise MgpoError(f"unknown --preset {self.preset!r}; use one of: {', '.join(PRESETS)}")

    def protocol_config(self) -> ProtocolConfig:
        """The protocol the rollout runs: the paper's two turns for mgpo, the direct prompt for grpo/sft."""
        turns, runs = self.protocol.get("max_turns"), 2 if self.algo == "mgpo" else 1
        if self.algo == "sft" and turns is not None and int(turns) == 2:
            # two-turn SFT: the MGPO conversation with the ground-truth box as turn 1 (mgpo.train.sft)
            return ProtocolConfig.paper().with_options(**self.protocol)
        if turns is not None and int(turns) != runs:
            raise MgpoError(
                f"--max-turns {turns}: training runs the two-turn protocol only (--algo {self.algo} runs {runs}); "
                "more turns are for mgpo infer / mgpo eval"
            )
        try:
            if self.algo == "mgpo":
                return ProtocolConfig.paper().with_options(**self.protocol)
            return ProtocolConfig.direct().with_options(**self.protocol)
        except ValueError as exc:
            raise MgpoError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def trl_field_names(algo: str) -> set[str]:
    from trl import GRPOConfig, SFTConfig

    cls = SFTConfig if algo == "sft" else GRPOConfig
    return {f.name for f in dataclasses.fields(cls)}


def make_config(yaml_path: str | Path | None = None, **flags: Any) -> TrainConfig:
    """Merge preset, YAML and flags (None means 'not given') into a TrainConfig; unknown keys are an error."""
    values: dict[str, Any] = {}
    if yaml_path is not None:
        values.update(read_yaml(yaml_path))
    trl_flags = flags.pop("trl", None) or {}
    protocol_flags = flags.pop("protocol", None) or {}
    values.update({k: v for k, v in flags.items() if v is not None})
    algo = values.get("algo", "mgpo")
    _check_cheap(values)  # a typo or a missing model directory is one line before TRL (seconds of imports) loads
    own = {f.name for f in dataclasses.fields(TrainConfig)}
    known_trl = trl_field_names(algo)
    proto_fields = {f.name for f in dataclasses.fields(ProtocolConfig)}
    trl: dict[str, Any] = dict(values.pop("trl", None) or {})
    protocol: dict[str, Any] = dict(values.pop("protocol", None) or {})
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in own:
            kwargs[key] = value
        elif key in known_trl:
            trl[key] = value
        elif key in proto_fields:
            protocol[key] = value
        else:
            raise MgpoError(
                f"unknown setting {key!r}; use an mgpo train option, a ProtocolConfig field or a TRL "
                f"{'SFTConfig' if algo == 'sft' else 'GRPOConfig'} field"
            )
    given = {**trl, **{k: v for k, v in trl_flags.items() if v is not None}}
    bad = [k for k in given if k not in known_trl]
    if bad:
        raise MgpoError(f"unknown TRL setting(s) {', '.join(bad)} for --algo {algo}")
    protocol.update({k: v for k, v in protocol_flags.items() if v is not None})
    cfg = TrainConfig(**kwargs)
    preset_trl = dict(PAPER_TRL) if cfg.preset == "paper" and cfg.algo != "sft" else {}
    if cfg.preset == "paper" and cfg.algo == "sft":
        preset_trl = {k: PAPER_TRL[k] for k in ("learning_rate", "weight_decay", "max_grad_norm", "lr_scheduler_type")}
    if cfg.preset == "paper" and cfg.turn_max_new_tokens is None and cfg.algo != "sft":
        cfg.turn_max_new_tokens = PAPER_TURN_TOKENS
    cfg.trl = {**preset_trl, **trl, **{k: v for k, v in trl_flags.items() if v is not None}}
    cfg.protocol = protocol
    cfg.protocol_config()  # a bad protocol option is one line now, before any data or model loads
    return cfg


def _check_cheap(values: dict[str, Any]) -> None:
    """The checks that need no import: --algo, --preset, and a local --model directory that is not there."""
    algo, preset = values.get("algo", "mgpo"), values.get("preset", "default")
    if algo not in ALGOS:
        raise MgpoError(f"unknown --algo {algo!r}; use one of: {', '.join(ALGOS)}")
    if preset not in PRESETS:
        raise MgpoError(f"unknown --preset {preset!r}; use one of: {', '.join(PRESETS)}")
    if values.get("model"):
        from mgpo.backends.hf import _check_local

        _check_local(str(values["model"]))


def _yaml_load(text: str) -> Any:
    """YAML as people mean it in configs: only true/false are booleans ('no' stays the string TRL expects, as in
    save_strategy: no) and 1e-6 is a float (PyYAML's YAML 1.1 rules say otherwise on both)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
    )
    return yaml.load(text, Loader=Loader)


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MgpoError(f"{p}: config file not found")
    try:
        data = _yaml_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise MgpoError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise MgpoError(f"{p}: the config must be a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs, values read as YAML (numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MgpoError(f"--set {item!r}: write KEY=VALUE, e.g. --set warmup_steps=10")
        out[key.strip().replace("-", "_")] = _yaml_load(raw) if raw.strip() else None
    return out
