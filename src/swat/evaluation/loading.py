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


def read_tokens(source: str | Path, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """The token stream of a text file, tokenised with the model's tokenizer."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"text not found: {source} (pass a UTF-8 text file)")
    return tokenize_text(source.read_text(encoding="utf-8"), tokenizer)
