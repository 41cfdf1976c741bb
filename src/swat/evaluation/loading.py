"""Loading what an evaluation needs: a saved model with its tokenizer, and token streams."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

import swat  # noqa: F401  (registers the "swat" model type with the Auto classes)


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model directory written by ``save_pretrained`` (weights as safetensors) and its tokenizer,
    the model in eval mode."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory (no config.json): pass the directory a training run saved, "
            "e.g. RUN_DIR/final"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"no tokenizer in {path}: save the tokenizer next to the model (tokenizer.save_pretrained)"
        ) from error
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device)
    model.eval()
    return model, tokenizer


def model_label(path: str | Path) -> str:
    """A short name for tables and legends: the run directory for ``RUN/final``-style paths."""
    path = Path(path).resolve()
    if path.name in ("final", "best", "last") or path.name.startswith(("checkpoint", "step")):
        return path.parent.name
    return path.name


def training_length(path: str | Path) -> int | None:
    """``data.seq_len`` of the run that saved ``RUN_DIR/final`` (read from ``RUN_DIR/config.yaml``),
    or None when the model does not come from a ``swat train`` run."""
    import yaml

    run_config = Path(path).resolve().parent / "config.yaml"
    if not run_config.is_file():
        return None
    seq_len = (yaml.safe_load(run_config.read_text()) or {}).get("data", {}).get("seq_len")
    return int(seq_len) if isinstance(seq_len, int) else None


def receptive_field(config) -> int | None:
    """Tokens the last logit can depend on: ``L*(w-1)+1`` with a window (SPEC.md section 2),
    ``None`` (unbounded) for full attention."""
    window = getattr(config, "sliding_window", None)
    if window is None:
        return None
    return config.num_hidden_layers * (window - 1) + 1


def tokenize_text(text: str, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """The whole text as one 1-D stream of token ids (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def read_tokens(
    source: str | Path, tokenizer: PreTrainedTokenizerBase, split: str = "heldout", max_tokens: int | None = None
) -> torch.Tensor:
    """The token stream of held-out text: a UTF-8 text file (tokenised with the model's
    tokenizer), or a prepared data directory (``swat data ...``), whose ``split`` is read as is;
    at most ``max_tokens`` tokens."""
    source = Path(source)
    if source.is_dir():
        return _read_shards(source, tokenizer, split, max_tokens)
    if not source.is_file():
        raise FileNotFoundError(f"text not found: {source} (pass a UTF-8 text file or a prepared data directory)")
    tokens = tokenize_text(source.read_text(encoding="utf-8"), tokenizer)
    return tokens[:max_tokens] if max_tokens is not None else tokens


def _read_shards(data_dir: Path, tokenizer, split: str, max_tokens: int | None) -> torch.Tensor:
    from swat.data import TokenShards

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
