"""One training config for model, data and optimisation: typed dataclasses, read with OmegaConf.

A config is the merge ``TrainConfig defaults <- preset or YAML file <- --set overrides``
(``OmegaConf.merge(structured(TrainConfig), load(yaml), from_dotlist(overrides))``), so every
key has a type and a default, and a misspelt key or a value of the wrong type is an error that
says what to change. Each section checks its values in its dataclass's ``__post_init__`` (which
``OmegaConf.to_object`` runs, as does a section made in Python), and ``TrainConfig`` checks that
the model section makes a valid model config. The sections:

    name: tiny
    model: {preset: tiny, sliding_window: 64}     # a model preset + any SWATConfig field, or
                                                  # {type: mamba2, hidden_size: 256, ...}: any
                                                  # transformers causal LM type + its config fields
    data: {dir: null, seq_len: 256, cross_documents: true}
    optim: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 30, weight_decay: 0.1, grad_clip: 1.0}
    train: {steps: 300, batch_size: 8, micro_batch_size: 8, seed: 0, bf16: auto}
    eval: {every: 100, windows: 32}
    checkpoint: {every: 100, keep_last: 2}
    log: {every: 10, tensorboard: false, wandb: false}

A preset NAME is ``presets/NAME.yaml``: the training recipe of the model preset NAME
(``swat.models.presets``), which holds the architecture, window included.

``model.type`` (default ``swat``) names the model: ``swat`` is ``SWATForCausalLM`` built from a
preset; any other type is a transformers model type (``llama``, ``mamba2``, ...), its config made
by ``AutoConfig.for_model(type, **fields)`` and its model by ``AutoModelForCausalLM.from_config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub.errors import StrictDataclassError
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException
from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from swat.errors import UserError
from swat.models.configuration_swat import SWATConfig
from swat.models.memory import refuse_beyond_memory
from swat.models.presets import PRESETS, preset_config
from swat.training.sampler import split_batch
from swat.utils.checks import check_device

PRESET_DIR = Path(__file__).parent / "presets"
SWAT_TYPE = "swat"
MAX_COUNT = 2**20
"""The most windows a batch or an evaluation may take (1,048,576): more cannot be meant (an
evaluation of 2**20 windows of 512 tokens reads half a billion tokens), and a mistyped count
would otherwise allocate its index arrays until the memory runs out."""
# the float32 weights every process builds in host memory before it moves them to the training device
# (gradients and AdamW's moments live on that device, whose memory this machine cannot see)
HOST_BYTES_PER_PARAMETER = 4


@dataclass
class DataConfig:
    """Where the tokens come from and how they are cut (docs/spec.md section 3)."""

    dir: str | None = None  # a prepared data dir (swat data ...); None: the Shakespeare dir
    train_split: str = "train"
    eval_split: str | None = "heldout"  # None: no held-out evaluation
    seq_len: int = 512  # training length, 4w..16w for sliding window training; == w is "train short"
    cross_documents: bool = True  # False: attention stays inside each document (segment_ids)

    def __post_init__(self) -> None:
        _refuse(_below(1, {"data.seq_len": self.seq_len}))


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

    def __post_init__(self) -> None:
        numbers = {"optim.lr": self.lr, "optim.min_lr": self.min_lr, "optim.eps": self.eps,
                   "optim.weight_decay": self.weight_decay, "optim.grad_clip": self.grad_clip,
                   **{f"optim.betas[{i}]": b for i, b in enumerate(self.betas)}}
        problems = [f"{key} must be a finite number, got {value}" for key, value in numbers.items()
                    if value is not None and not math.isfinite(value)]
        if self.lr <= 0 or not 0 <= self.min_lr <= self.lr:
            problems.append(f"need optim.lr > 0 and 0 <= optim.min_lr <= optim.lr, got {self.lr} and {self.min_lr}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            problems.append("optim.warmup_steps and optim.weight_decay must be >= 0, optim.grad_clip > 0 or null")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        _refuse(problems)


@dataclass
class RunConfig:
    """The loop: how many steps, batch sizes, precision and parallelism."""

    steps: int = 1000
    batch_size: int = 16  # global batch: sequences per optimiser step, summed over processes
    micro_batch_size: int = 8  # most sequences per forward/backward on one process (fewer if its share is)
    seed: int = 0
    device: str = "auto"  # auto: cuda:LOCAL_RANK if available, else cpu
    bf16: Any = "auto"  # true, false or auto: on where bf16 matmuls are fast (GPUs, AMX/AVX512-BF16 CPUs)
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard parameters with FSDP2 fully_shard instead of DDP replicas
    max_bad_steps: int = 3  # stop after this many non-finite steps in a row

    def __post_init__(self) -> None:
        problems = _below(1, {"train.steps": self.steps, "train.batch_size": self.batch_size,
                              "train.micro_batch_size": self.micro_batch_size,
                              "train.max_bad_steps": self.max_bad_steps})
        problems += _above(MAX_COUNT, {"train.batch_size": self.batch_size,
                                       "train.micro_batch_size": self.micro_batch_size})
        problems += _below(0, {"train.seed": self.seed})
        if not problems:
            try:
                split_batch(self.batch_size, self.micro_batch_size, world_size=1)
            except UserError as error:
                problems.append(str(error))
        if self.bf16 not in (True, False, "auto"):
            problems.append(f"train.bf16 must be true, false or auto, got {self.bf16!r}")
        if self.device != "auto":
            try:
                check_device(self.device, instead="use train.device=auto", present=False)  # present: at the start
            except UserError:
                problems.append(f"train.device must be auto, cpu, cuda or cuda:N (a torch device), got {self.device!r}")
        _refuse(problems)


@dataclass
class EvalConfig:
    """Periodic evaluation: mean loss over fixed, evenly spaced held-out windows."""

    every: int = 100  # steps between evaluations; 0: only at the end
    windows: int = 32
    batch_size: int = 8

    def __post_init__(self) -> None:
        _refuse(_below(0, {"eval.every": self.every})
                + _below(1, {"eval.windows": self.windows, "eval.batch_size": self.batch_size})
                + _above(MAX_COUNT, {"eval.windows": self.windows, "eval.batch_size": self.batch_size}))


@dataclass
class CheckpointConfig:
    every: int = 100  # steps between checkpoints; 0: only at the end
    keep_last: int = 2

    def __post_init__(self) -> None:
        _refuse(_below(0, {"checkpoint.every": self.every}) + _below(1, {"checkpoint.keep_last": self.keep_last}))


@dataclass
class LogConfig:
    every: int = 10  # steps between metrics records
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "swat"

    def __post_init__(self) -> None:
        _refuse(_below(1, {"log.every": self.every}))


@dataclass
class TrainConfig:
    name: str = "run"
    model: dict[str, Any] = field(default_factory=dict)  # checked: SWAT gets preset tiny by default
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        """The sections check themselves; the model section must make a valid model config."""
        self.model = _check_model_section(self.model)
        if self.model_type != SWAT_TYPE and not self.data.cross_documents:
            raise UserError(f"data.cross_documents=false keeps attention inside documents through segment_ids, "
                            f"which only model.type=swat takes (model.type={self.model_type} would see across "
                            "documents anyway): remove data.cross_documents or use a SWAT model")
        try:
            model_config = self.model_config()
        except UserError as error:
            if self.model_type != SWAT_TYPE:
                raise
            raise UserError(_in_model_section(str(error))) from None
        except (ValueError, TypeError, StrictDataclassError) as error:  # transformers' own checks
            shown = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
            raise UserError(f"invalid model section for model.type={self.model_type}: {shown}") from None
        self._refuse_beyond_memory(model_config)

    def _refuse_beyond_memory(self, model_config: PretrainedConfig) -> None:
        """The float32 weights each process builds before training (the whole model, also under
        FSDP, which shards it afterwards) against the machine's memory."""
        sizes = [f"model.{key}={value}" for key, value in self.model.items()
                 if key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "head_dim")]
        keys = ", ".join(sizes) if sizes else f"model.preset={self.model['preset']}"
        refuse_beyond_memory(model_config, HOST_BYTES_PER_PARAMETER,
                             what="training this model", change=f"make it smaller ({keys}), or train on a machine "
                             "with more memory")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as plain YAML (``yaml.safe_load`` reads it back; so does ``load_config``)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def model_type(self) -> str:
        """The ``model.type``: ``swat`` or a transformers model type (``llama``, ``mamba2``, ...)."""
        return self.model.get("type", SWAT_TYPE)

    def model_config(self, **extra: Any) -> PretrainedConfig:
        """The model config of the ``model`` section plus ``extra``: a ``SWATConfig`` (preset +
        overrides) for ``swat``, else ``AutoConfig.for_model(type, **fields)``."""
        fields = {key: value for key, value in self.model.items() if key != "type"}
        if self.model_type == SWAT_TYPE:
            return preset_config(fields.pop("preset", "tiny"), **{**fields, **extra})
        return AutoConfig.for_model(self.model_type, **{**fields, **extra})


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def load_config(source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A checked ``TrainConfig`` from a preset name, a YAML file or a dict, plus ``key=value``
    overrides with dotted keys (``model.sliding_window=128``, ``optim.lr=1e-3``)."""
    layers = [*_read_source(source), _dotlist(overrides)]
    for layer in layers:
        _refuse_interpolations(layer)
        _check_sections(layer)
    layers.insert(0, OmegaConf.structured(TrainConfig))
    try:
        config = OmegaConf.to_object(OmegaConf.merge(*layers))
    except OmegaConfBaseException as error:
        raise UserError(_explain(error)) from None
    return config


def _read_source(source: str | Path | dict[str, Any]) -> list[DictConfig]:
    """The config layers of ``source``: its name (the file's stem) and its content."""
    if isinstance(source, dict):
        return [_as_config(source, "the config")]
    path = Path(source)
    if not path.suffix and str(source) in preset_names():
        path = PRESET_DIR / f"{source}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no training config {str(source)!r}: pass a YAML file or one of the presets {preset_names()}"
        )
    try:
        content = OmegaConf.load(path)
    except (OmegaConfBaseException, yaml.YAMLError) as error:
        mark = getattr(error, "problem_mark", None)
        where = f" near line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path} is not valid YAML ({_first_line(error)}{where}): fix the file there") from None
    if not isinstance(content, DictConfig):
        raise UserError(f"{path} holds a list: a training config is a YAML mapping of sections, e.g. "
                         "'train: {steps: 100}'")
    return [OmegaConf.create({"name": path.stem}), content]


def _refuse_interpolations(layer: DictConfig) -> None:
    """Refuse ``${...}`` (``${oc.env:VAR}`` and every other resolver or interpolation): its value
    would be written into config.yaml, every checkpoint and the final model (a secret copied
    into a model); and a run ``name`` that is not one path component (the default --out is
    ``runs/NAME``)."""
    for key, value in _leaves(OmegaConf.to_container(layer, resolve=False)):
        if isinstance(value, str) and "${" in value:
            raise UserError(f"config key {key!r} is {value!r}: interpolations and resolvers (${{oc.env:...}}) are "
                            "not read, since the config is saved with every checkpoint; write the value itself")
    name = layer.get("name")
    if name is not None and (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
                             or "\0" in name):
        raise UserError(f"name {name!r} must be one plain directory name (the default --out is runs/NAME): "
                        "no '/', no '..', e.g. name: my-run")


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}{key}.")]
    if isinstance(tree, list):
        return [leaf for i, value in enumerate(tree) for leaf in _leaves(value, f"{prefix[:-1]}[{i}].")]
    return [(prefix[:-1], tree)]


def _as_config(raw: dict[str, Any], where: str) -> DictConfig:
    try:
        return OmegaConf.create(raw)
    except OmegaConfBaseException as error:
        raise UserError(f"{where}: {_first_line(error)}") from None


def _dotlist(overrides: list[str] | tuple[str, ...]) -> DictConfig:
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {item!r} must look like section.key=value, e.g. optim.lr=1e-3")
    try:
        return OmegaConf.from_dotlist([item.strip() for item in overrides])
    except OmegaConfBaseException as error:
        raise UserError(f"cannot parse the overrides {list(overrides)}: {_first_line(error)}") from None


def _check_sections(layer: DictConfig) -> None:
    sections = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "name"]
    for key in sections:
        if key in layer and not isinstance(layer[key], DictConfig):
            raise UserError(f"config section {key!r} must be a mapping of its keys (e.g. {key}.KEY=VALUE), "
                            f"got {layer[key]!r}")


def _explain(error: OmegaConfBaseException) -> str:
    """What an OmegaConf merge error means for the config's author, and what to change."""
    key = error.full_key or ""
    if isinstance(error, ConfigKeyError) and dataclasses.is_dataclass(error.object_type):
        return _unknown_message(str(error.key), [f.name for f in dataclasses.fields(error.object_type)],
                                key.rpartition(".")[0])
    expected = _field_type(key)
    if expected is None:
        return f"invalid training config: {_first_line(error)}"
    shown = _first_line(error)
    if "DictConfig" in shown:
        return f"cannot set keys under {key!r}: {key!r} is a value, not a section"
    return f"config key {key!r} must be {_type_name(expected)} ({shown})"


def _field_type(full_key: str) -> Any:
    """The declared type of a dotted key of ``TrainConfig`` (list items: the item type), or None."""
    node: Any = TrainConfig
    for part in re.sub(r"\[\d+\]", ".[]", full_key).split("."):
        if part == "[]":
            node = typing.get_args(node)[0]
            continue
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
    return node


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        names = ["null" if o is type(None) else _type_name(o) for o in options if not (o is int and float in options)]
        return " or ".join(names)  # ints count as floats
    return getattr(hint, "__name__", str(hint))


def _first_line(error: BaseException) -> str:
    return (getattr(error, "msg", None) or str(error)).splitlines()[0]


def _unknown_message(key: str, valid: list[str], where: str) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    section = f"in section {where!r}" if where else "at the top level"
    return f"unknown config key {hint} {section}; valid keys: {', '.join(valid)}"


def _check_model_section(value: dict[str, Any]) -> dict[str, Any]:
    """The model section with its keys checked: SWAT's against ``SWATConfig`` (names and
    types), another type's against the fields of its transformers config class (names)."""
    kind = value.get("type", SWAT_TYPE)
    if kind != SWAT_TYPE:
        return _check_transformers_section(value, kind)
    valid = {"type", "preset", *(f.name for f in dataclasses.fields(SWATConfig))}
    for key in value:
        if key not in valid:  # the message lists SWAT's own fields, not every PretrainedConfig one
            raise UserError(_unknown_message(key, ["type", "preset", *SWATConfig.__annotations__], "model"))
    if value.get("preset", "tiny") not in PRESETS:
        raise UserError(f"model.preset must be one of {sorted(PRESETS)}, got {value.get('preset')!r}")
    hints = typing.get_type_hints(SWATConfig, localns={"torch": torch})  # PretrainedConfig's hints name torch
    for key, item in value.items():
        if key in hints and not _has_type(item, hints[key]):
            raise UserError(f"config key 'model.{key}' must be {_type_name(hints[key])}, got {item!r}"
                            + (" (YAML spells them .nan, .inf and -.inf)" if str(item).lower().lstrip("+-") in
                                ("nan", "inf", "infinity") else ""))
    return {"preset": value.get("preset", "tiny"), **value}


def _check_transformers_section(value: dict[str, Any], kind: Any) -> dict[str, Any]:
    """A model section of a transformers causal LM type: a known type and its config's keys
    (``AutoConfig.for_model`` checks the values when ``_check`` builds the config)."""
    known = sorted({SWAT_TYPE, *(t for t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if t in CONFIG_MAPPING)})
    if kind not in known:
        close = difflib.get_close_matches(str(kind), known, n=3)
        raise UserError(f"model.type {kind!r} is not swat nor a transformers causal LM type"
                        + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                        + ": use swat (the default) or a type AutoModelForCausalLM builds, e.g. llama or mamba2")
    if value.get("preset") is not None:
        raise UserError(f"model.preset names a SWAT size (swat.models.presets); model.type={kind} takes the fields "
                        f"of its config instead (e.g. model.hidden_size): remove model.preset, or set "
                        "model.preset=null to keep a preset's training recipe")
    value = {key: item for key, item in value.items() if key != "preset"}
    config_class = CONFIG_MAPPING[kind]
    valid = ["type", *(f.name for f in dataclasses.fields(config_class))]
    for key in value:
        if key not in valid:
            raise UserError(_unknown_message(key, valid, "model") + f" (the fields of {config_class.__name__})")
    return dict(value)


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a ``SWATConfig`` field's annotation (ints count as floats)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(hint) or hint
    return isinstance(value, origin) if isinstance(origin, type) else True


def _below(minimum: int, values: dict[str, int]) -> list[str]:
    return [f"{key} must be >= {minimum}, got {value}" for key, value in values.items() if value < minimum]


def _above(maximum: int, values: dict[str, int]) -> list[str]:
    return [f"{key} must be <= {maximum:,}, got {value:,}: a value this large cannot be meant" for key, value
            in values.items() if value > maximum]


def _refuse(problems: list[str]) -> None:
    if problems:
        raise UserError("invalid training config: " + "; ".join(problems))


def _in_model_section(message: str) -> str:
    """``SWATConfig``'s message with its field names as the ``model.`` keys a config file uses."""
    fields = {f.name for f in dataclasses.fields(SWATConfig)}
    problems = message.removeprefix("invalid SWATConfig: ").split("; ")
    keyed = [f"model.{p}" if p.split(" ", 1)[0] in fields else p for p in problems]
    return "invalid model section: " + "; ".join(keyed)
