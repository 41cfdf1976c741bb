"""What evaluations say about a model: a short label for its directory, how it sees its context
(window, full attention or recurrent), its receptive field and the training length of its run.

The model and its tokenizer are loaded by :func:`swat.models.loading.load_model`."""

from __future__ import annotations

from pathlib import Path

import yaml

from swat.training.run_dir import RunDir

__all__ = ["has_attention", "model_kind", "model_label", "receptive_field", "training_length"]


def model_label(path: str | Path) -> str:
    """A short name for tables and legends: the run's name for its ``final/`` model, ``RUN/STEP``
    for one of its checkpoints, the directory's name for a model outside a run."""
    path = Path(path).resolve()
    run = RunDir.of_model(path)
    if run is None:
        return path.name
    return run.root.name if path == run.final.resolve() else f"{run.root.name}/{path.name}"


RECURRENT_MODEL_TYPES = ("mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm")  # transformers types without attention


def has_attention(config) -> bool:
    """Whether the model mixes tokens with attention (False for the recurrent types above)."""
    return config.model_type not in RECURRENT_MODEL_TYPES


def model_kind(config) -> str:
    """How a model sees its context, for tables: ``window w``, ``full attention`` or
    ``recurrent (TYPE)``."""
    window = getattr(config, "sliding_window", None)
    if not has_attention(config):
        return f"recurrent ({config.model_type})"
    return "full attention" if window is None else f"window {window}"


def training_length(path: str | Path) -> int | None:
    """``data.seq_len`` of the run that saved the model directory ``path`` (read from the run's
    config), or None when the model does not come from a ``swat train`` run."""
    run = RunDir.of_model(path)
    if run is None:
        return None
    seq_len = (yaml.safe_load(run.config.read_text()) or {}).get("data", {}).get("seq_len")
    return int(seq_len) if isinstance(seq_len, int) else None


def receptive_field(config) -> int | None:
    """Tokens the last logit can depend on: ``L*(w-1)+1`` with a window (docs/spec.md section 2),
    ``None`` (unbounded) for full attention."""
    window = getattr(config, "sliding_window", None)
    if window is None:
        return None
    return config.num_hidden_layers * (window - 1) + 1
