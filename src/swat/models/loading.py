"""Loading a saved model together with its tokenizer, for every user of a model directory
(generation, evaluation, experiments). Being part of :mod:`swat.models`, whose import registers
the ``"swat"`` model type with the Auto classes, it reads swat directories with the plain
``AutoModelForCausalLM`` / ``AutoTokenizer``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

# the dtypes a model can be loaded in, by the names the command line takes (--dtype)
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                  "float16": torch.float16, "float64": torch.float64}


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model directory written by ``save_pretrained`` (weights as safetensors) and its tokenizer,
    the model on ``device`` in ``dtype`` and in eval mode."""
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
    return model.eval(), tokenizer
