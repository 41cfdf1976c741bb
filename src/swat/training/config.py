"""One training config (YAML) for model, data and optimisation, with presets and dotted overrides.

A config file has the sections below; every key is optional and defaults to the values of the
dataclasses here. ``model`` names a model preset (``swat.models.presets``) and overrides any
``SWATConfig`` field; the other sections are checked against their dataclass, so a misspelt key
is an error that names the valid keys.

    name: tiny
    model: {preset: tiny, sliding_window: 64}
    data: {dir: null, seq_len: 384, cross_documents: true}
    optim: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 30, weight_decay: 0.1, grad_clip: 1.0}
    train: {steps: 300, batch_size: 16, micro_batch_size: 8, seed: 0, bf16: auto}
    eval: {every: 100, windows: 32}
    checkpoint: {every: 100, keep_last: 2}
    log: {every: 10, tensorboard: false, wandb: false}
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    """Where the tokens come from and how they are cut (SPEC.md section 3)."""

    dir: str | None = None  # a prepared data dir (swat data ...); None: the Shakespeare dir
    train_split: str = "train"
    eval_split: str | None = "heldout"  # None: no held-out evaluation
    seq_len: int = 512  # training length, 4w..16w for sliding window training; == w is "train short"
    cross_documents: bool = True  # False: attention stays inside each document (segment_ids)


@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay to ``min_lr``."""

    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # on matrices only (see swat.training.optim)
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping


@dataclass
class RunConfig:
    """The loop: how many steps, batch sizes, precision and parallelism."""

    steps: int = 1000
    batch_size: int = 16  # global batch: sequences per optimiser step, summed over processes
    micro_batch_size: int = 8  # sequences per forward/backward on one process
    seed: int = 0
    device: str = "auto"  # auto: cuda:LOCAL_RANK if available, else cpu
    bf16: str | bool = "auto"  # auto: on where bf16 matmuls are fast (GPUs, AMX/AVX512-BF16 CPUs)
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard parameters with FSDP2 fully_shard instead of DDP replicas
    max_bad_steps: int = 3  # stop after this many non-finite steps in a row


@dataclass
class EvalConfig:
    """Periodic evaluation: mean loss over fixed, evenly spaced held-out windows."""

    every: int = 100  # steps between evaluations; 0: only at the end
    windows: int = 32
    batch_size: int = 8


@dataclass
class CheckpointConfig:
    every: int = 100  # steps between checkpoints; 0: only at the end
    keep_last: int = 2


@dataclass
class LogConfig:
    every: int = 10  # steps between metrics records
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "swat"


@dataclass
class TrainConfig:
    name: str = "run"
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "tiny"})
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def model_config(self, **extra: Any):
        """The ``SWATConfig`` of the ``model`` section (preset + overrides + ``extra``)."""
        from swat.models.presets import preset_config

        fields = dict(self.model)
        return preset_config(fields.pop("preset", "tiny"), **{**fields, **extra})


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def load_config(source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A checked ``TrainConfig`` from a preset name, a YAML file or a dict, plus ``key=value``
    overrides with dotted keys (``model.sliding_window=128``, ``optim.lr=1e-3``)."""
    raw, name = _read_source(source)
    raw = copy.deepcopy(raw)
    raw.setdefault("name", name)
    for item in overrides:
        key, value = _split_override(item)
        _set_dotted(raw, key, value)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    config = _build(TrainConfig, raw, "")
    _check(config)
    return config


def parse_value(text: str) -> Any:
    """A command-line value as YAML (``true``, ``null``, ``[0.9, 0.95]``), with ``1e-3`` read as a
    number (YAML 1.1 would keep it a string)."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _read_source(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(source, dict):
        return source, str(source.get("name", "run"))
    path = Path(source)
    if not path.suffix and str(source) in preset_names():
        path = PRESET_DIR / f"{source}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no training config {str(source)!r}: pass a YAML file or one of the presets {preset_names()}"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config must be a YAML mapping, got {type(raw).__name__}")
    return raw, path.stem


def _split_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {item!r} must look like section.key=value, e.g. optim.lr=1e-3")
    return key.strip(), parse_value(value)


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {key!r}: {part!r} is a value, not a section")
        node = child
    node[leaf] = value


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ValueError(f"config section {where or '(top level)'!r} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(_unknown_message(unknown, list(fields), where))
    values = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, path)
        elif key == "model" and not where:
            values[key] = _check_model_section(value)
        else:
            values[key] = _coerce(value, hint, path)
    return cls(**values)


def _unknown_message(unknown: list[str], valid: list[str], where: str) -> str:
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    section = f"section {where!r}" if where else "the top level"
    return f"unknown config key(s) in {section}: {', '.join(hints)}; valid keys: {', '.join(valid)}"


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """``value`` checked against the type ``hint``; ints become floats and numeric strings numbers."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        ok, converted = _try_type(value, option)
        if ok:
            return converted
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"config key {path!r} must be {names}, got {value!r}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _try_type(value: Any, option: Any) -> tuple[bool, Any]:
    if option is type(None):
        return value is None, None
    if option is bool:
        return isinstance(value, bool), value
    if option is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if option is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if option is str:
        return isinstance(value, str), value
    if typing.get_origin(option) is list:
        (item,) = typing.get_args(option)
        if not isinstance(value, (list, tuple)):
            return False, None
        converted = [_try_type(v, item) for v in value]
        return all(ok for ok, _ in converted), [v for _, v in converted]
    raise TypeError(f"unsupported config type {option!r}")


def _check_model_section(value: Any) -> dict[str, Any]:
    from swat.models.configuration_swat import SWATConfig
    from swat.models.presets import PRESETS

    if not isinstance(value, dict):
        raise ValueError(f"config section 'model' must be a mapping, got {value!r}")
    valid = {"preset", *(f.name for f in dataclasses.fields(SWATConfig))}
    unknown = sorted(set(value) - valid)
    if unknown:
        raise ValueError(_unknown_message(unknown, ["preset", *SWATConfig.__annotations__], "model"))
    if value.get("preset", "tiny") not in PRESETS:
        raise ValueError(f"model.preset must be one of {sorted(PRESETS)}, got {value.get('preset')!r}")
    return dict(value)


def _check(config: TrainConfig) -> None:
    problems = []
    run, data, optim = config.train, config.data, config.optim
    positive = {"data.seq_len": data.seq_len, "train.steps": run.steps, "train.batch_size": run.batch_size,
                "train.micro_batch_size": run.micro_batch_size, "eval.windows": config.eval.windows,
                "eval.batch_size": config.eval.batch_size, "checkpoint.keep_last": config.checkpoint.keep_last,
                "train.max_bad_steps": run.max_bad_steps, "log.every": config.log.every}
    problems += [f"{key} must be >= 1, got {value}" for key, value in positive.items() if value < 1]
    if run.batch_size % run.micro_batch_size:
        problems.append(f"train.batch_size ({run.batch_size}) must be a multiple of train.micro_batch_size "
                        f"({run.micro_batch_size})")
    if run.bf16 not in (True, False, "auto"):
        problems.append(f"train.bf16 must be true, false or auto, got {run.bf16!r}")
    if optim.lr <= 0 or not 0 <= optim.min_lr <= optim.lr:
        problems.append(f"need optim.lr > 0 and 0 <= optim.min_lr <= optim.lr, got {optim.lr} and {optim.min_lr}")
    if optim.warmup_steps < 0 or optim.weight_decay < 0 or (optim.grad_clip is not None and optim.grad_clip <= 0):
        problems.append("optim.warmup_steps and optim.weight_decay must be >= 0, optim.grad_clip > 0 or null")
    if len(optim.betas) != 2 or not all(0 <= b < 1 for b in optim.betas):
        problems.append(f"optim.betas must be two numbers in [0, 1), got {optim.betas}")
    if config.eval.every < 0 or config.checkpoint.every < 0:
        problems.append("eval.every and checkpoint.every must be >= 0 (0: only at the end)")
    if problems:
        raise ValueError("invalid training config: " + "; ".join(problems))
    config.model_config()  # the model section must make a valid SWATConfig
