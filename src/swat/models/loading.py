"""Loading a saved model together with its tokenizer, for every user of a model directory
(generation, evaluation, experiments). Being part of :mod:`swat.models`, whose import registers
the ``"swat"`` model type with the Auto classes, it reads swat directories with the plain
``AutoConfig`` / ``AutoModelForCausalLM`` / ``AutoTokenizer``, never running code from the
directory and reading weights only from safetensors.

A directory that cannot be loaded (no or unreadable ``config.json``, missing, truncated or foreign
weights, no tokenizer) raises ``FileNotFoundError`` or ``ValueError`` naming the file and what to do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from swat.errors import UserError
from swat.models.configuration_swat import SWATConfig, parameter_count
from swat.models.hub import refuse_custom_code
from swat.models.memory import refuse_beyond_memory, size_fields

# the dtypes a model can be loaded in, by the names the command line takes (--dtype)
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                  "float16": torch.float16, "float64": torch.float64}
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")  # one file, or the index of shards
MAX_CONFIG_BYTES = 2**24  # a config.json is a few KiB; 16 MiB leaves room for label maps
MAX_CONFIG_DEPTH = 32  # nesting of objects and lists in config.json (a real config has 3 or 4)


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model directory written by ``save_pretrained`` (weights as safetensors) and its tokenizer,
    the model on ``device`` in ``dtype`` and in eval mode."""
    path = Path(path)
    config = load_config(path)
    if not any((path / name).is_file() for name in WEIGHTS_FILES):
        raise FileNotFoundError(
            f"{path} has no weights ({' or '.join(WEIGHTS_FILES)}): swat reads weights only as safetensors; "
            "save the model with save_pretrained, or pass the directory a training run saved, e.g. RUN_DIR/final"
        )
    refuse_custom_code(path, "AutoTokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"no tokenizer in {path} ({_first_line(error)}): save the tokenizer next to the model "
            "(tokenizer.save_pretrained)"
        ) from error
    vocab_size = getattr(config.get_text_config(), "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise UserError(f"the tokenizer in {path} has {len(tokenizer)} tokens, more than the model's vocabulary of "
                        f"{vocab_size} (config.json): it is not the model's tokenizer; save the tokenizer the model "
                        "was trained with next to it")
    return load_weights(path, config, dtype).to(device).eval(), tokenizer


def load_weights(path: str | Path, config: PretrainedConfig, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The model of directory ``path`` for ``config``, its weights read from safetensors only;
    ``ValueError`` naming the damage when a file cannot be read or does not fit the config."""
    refuse_beyond_memory(config, dtype.itemsize, with_cache=True, bytes_per_value=dtype.itemsize,
                         what=f"the model in {path} in {str(dtype).removeprefix('torch.')}",
                         change=f"check config.json's sizes ({size_fields(config)}) for a digit too many, or "
                                "load it on a machine with more memory")
    _check_headers(Path(path), config)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dtype, use_safetensors=True,
                                                           trust_remote_code=False, output_loading_info=True)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise UserError(
            f"cannot read the weights in {path} ({_first_line(error)}): the file is damaged or incomplete "
            "(e.g. an interrupted copy) or belongs to another config; save or copy the model again, "
            "or use another checkpoint"
        ) from error
    missing = info.get("missing_keys") or []
    mismatched = info.get("mismatched_keys") or []
    if missing or mismatched:
        names = sorted(missing) + sorted(name for name, *_ in mismatched)
        raise UserError(
            f"the weights in {path} do not fit its config.json ({len(names)} tensors missing or of another "
            f"shape, e.g. {names[0]}): the directory mixes files of different models; save it again"
        )
    _refuse_non_finite(model, Path(path))
    return model


def _refuse_non_finite(model: PreTrainedModel, path: Path) -> None:
    """``UserError`` naming the first tensor holding a NaN or an infinity: such a model turns every
    output into NaN (sampling from it fails deep inside torch), so it is refused when loaded."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise UserError(f"the weights in {path} hold {bad} non-finite values (NaN or inf) in {name}: the "
                                "run diverged or the file is damaged; use an earlier checkpoint (RUN_DIR/ckpt-*) "
                                "or copy the model again")


def load_config(path: str | Path) -> PretrainedConfig:
    """The config of the model directory ``path`` (``config.json``), checked by its config class."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory (no config.json): pass the directory a training run saved, "
            "e.g. RUN_DIR/final"
        )
    file = path / "config.json"
    fields = _read_json(file)
    model_type = fields.get("model_type") if isinstance(fields, dict) else None
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UserError(f"{file} names the model type {model_type!r}, which transformers does not know (a swat "
                         "model has \"model_type\": \"swat\"): fix the file, or save the model again")
    _refuse_loading_options(file, fields)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(
            f"{file} is not a usable model config ({_first_line(error)}): fix the file, or save "
            "the model again (a directory written by save_pretrained, e.g. RUN_DIR/final)"
        ) from error


def _read_json(file: Path) -> object:
    """``file`` parsed, refused with what to change when it is too large, not JSON, holds a
    number Python will not convert, or nests deeper than :data:`MAX_CONFIG_DEPTH`."""
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{file} is {file.stat().st_size:,} bytes, more than the {MAX_CONFIG_BYTES:,} a model config "
                        "can need: it is not a model's config.json; save the model again")
    try:
        fields = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # ValueError: JSON, or an int of 4300+ digits
        problem = "nests too deep" if isinstance(error, RecursionError) else _first_line(error)
        raise UserError(f"{file} is not valid JSON ({problem}): the file is damaged; save the model again") from None
    stack = [(fields, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise UserError(f"{file} nests objects or lists more than {MAX_CONFIG_DEPTH} levels deep: it is not a "
                            "model's config.json; save the model again")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return fields


def _refuse_loading_options(file: Path, fields: dict) -> None:
    """``UserError`` for a ``torch_dtype`` that is not a float dtype of :data:`DTYPES` and for any
    ``quantization_config``: swat loads full-precision safetensors only."""
    for key in ("torch_dtype", "dtype"):
        value = fields.get(key)
        if value is not None and value not in (*DTYPES, "auto"):
            raise UserError(f"{file} has {key} {value!r}, not one of {', '.join(DTYPES)}: set it to the dtype the "
                            "weights are saved in (e.g. \"float32\"), or remove the key")
    if fields.get("quantization_config") is not None:
        raise UserError(f"{file} has a quantization_config: swat loads full-precision weights only (safetensors of "
                        "float32, bfloat16 or float16); remove the key and use the unquantized model")


def _check_headers(path: Path, config: PretrainedConfig) -> None:
    """The safetensors headers, before a tensor is read: ``UserError`` if a tensor is stored as
    integers or booleans (a model's weights are floating point, and from_pretrained would load
    such a tensor as zeros), or if ``model.safetensors`` holds another number of parameters than
    a SWAT ``config`` describes (the config of another model, or a size edited in config.json).
    (An index of sharded weights that names files outside the directory transformers refuses.)"""
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(file, "pt") as weights:
                slices = [(name, weights.get_slice(name)) for name in weights.keys()]  # noqa: SIM118
                dtypes = {name: tensor.get_dtype() for name, tensor in slices}
                parameters = sum(math.prod(tensor.get_shape()) for _, tensor in slices)
        except (SafetensorError, OSError):
            continue  # a damaged file: from_pretrained names the damage
        integer = [f"{name} ({dtype})" for name, dtype in dtypes.items() if not dtype.startswith(("F", "BF"))]
        if integer:
            raise UserError(f"{file} stores {len(integer)} weight tensors as integers, e.g. {integer[0]}: a model's "
                            "weights are floating point (F32, BF16, F16); save the model again with save_pretrained")
        if file.name == WEIGHTS_FILES[0] and isinstance(config, SWATConfig) and parameters != parameter_count(config):
            raise UserError(f"the weights in {path} do not fit its config.json ({file.name} holds {parameters:,} "
                            f"parameters, config.json describes {parameter_count(config):,}: {size_fields(config)}): "
                            "the directory mixes files of different models, or a size in config.json was changed; "
                            "save it again")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
