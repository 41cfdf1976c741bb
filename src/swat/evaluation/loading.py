"""What an evaluation reads besides the model: held-out token streams, and facts about a model
directory (a short label, the training length of its run, its receptive field).

The model and its tokenizer are loaded by :func:`swat.models.loading.load_model`."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from transformers import PreTrainedTokenizerBase

from swat.data.shards import TokenShards
from swat.training.run_dir import RunDir

__all__ = ["model_label", "read_tokens", "receptive_field", "sequences_of", "training_length"]


def model_label(path: str | Path) -> str:
    """A short name for tables and legends: the run's name for its ``final/`` model, ``RUN/STEP``
    for one of its checkpoints, the directory's name for a model outside a run."""
    path = Path(path).resolve()
    run = RunDir.of_model(path)
    if run is None:
        return path.name
    return run.root.name if path == run.final.resolve() else f"{run.root.name}/{path.name}"


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


def read_tokens(
    source: str | Path, tokenizer: PreTrainedTokenizerBase, split: str = "heldout", max_tokens: int | None = None
) -> torch.Tensor:
    """The token stream of held-out text: a UTF-8 text file (tokenised with the model's
    tokenizer, no special tokens added), or a prepared data directory (``swat data ...``), whose
    ``split`` is read as is; at most ``max_tokens`` tokens."""
    source = Path(source)
    if source.is_dir():
        return _read_shards(source, tokenizer, split, max_tokens)
    if not source.is_file():
        raise FileNotFoundError(f"text not found: {source} (pass a UTF-8 text file or a prepared data directory)")
    ids = tokenizer(source.read_text(encoding="utf-8"), add_special_tokens=False,
                    return_attention_mask=False)["input_ids"]
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


def _read_shards(data_dir: Path, tokenizer, split: str, max_tokens: int | None) -> torch.Tensor:
    shards = TokenShards(data_dir, split)
    if shards.vocab_size != len(tokenizer):
        raise ValueError(
            f"{data_dir} was tokenised with a vocabulary of {shards.vocab_size} tokens but the model's tokenizer "
            f"has {len(tokenizer)}: evaluate on a text file instead, or on data prepared with the model's tokenizer"
        )
    count = len(shards) if max_tokens is None else min(len(shards), max_tokens)
    return torch.from_numpy(shards.window(0, count))


def sequences_of(tokens: torch.Tensor, length: int, count: int) -> torch.Tensor:
    """The first ``count`` consecutive ``length``-token sequences of a stream, ``[count, length]``
    (fewer if the stream is short, at least one)."""
    available = len(tokens) // length
    if available == 0:
        raise ValueError(f"the text has {len(tokens)} tokens, fewer than one sequence of {length}: "
                         "give a longer text or a shorter length")
    count = min(count, available)
    return tokens[: count * length].view(count, length)
