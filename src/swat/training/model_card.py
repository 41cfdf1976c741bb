"""The model card (``README.md``) that ``swat train`` writes into every model directory, as Hub
users expect: what the model is, how it was trained, how well it did, and how to load it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from transformers import PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from swat.models.loss import perplexity

SWAT_FIELDS = ("sliding_window", "attention_activation", "alibi", "alibi_retain_scale", "use_rope",
               "rope_theta", "sigmoid_bias", "qk_norm")
SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim")


def model_card(config: PretrainedConfig, *, parameters: int, data: Mapping[str, Any], tokens: int,
               step: int, eval_loss: float | None, command: str) -> str:
    """Markdown with a YAML header. ``data``: a description of the training data (its directory
    and manifest fields); ``tokens``: tokens trained on so far; ``eval_loss``: the last held-out
    next-token loss, or ``None`` before the first evaluation. A SWAT model is described as SWAT;
    any other transformers model by its type, its class and the architecture fields of its config."""
    swat = config.model_type == "swat"
    names = SHAPE_FIELDS + SWAT_FIELDS if swat else _architecture_fields(config)
    fields = [f"| `{name}` | `{getattr(config, name, None)!r}` |" for name in names if hasattr(config, name)]
    data_rows = [f"| {key} | `{value}` |" for key, value in data.items()]
    loss = "not evaluated yet" if eval_loss is None else f"{eval_loss:.4f} (perplexity {perplexity(eval_loss):.2f})"
    return "\n".join([
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [swat, sliding-window-attention, sigmoid-attention, alibi]" if swat else f"tags: [{config.model_type}]",
        "---",
        "",
        *(_swat_description(parameters) if swat else _other_description(config, parameters)),
        "",
        "## Architecture",
        "",
        "| field | value |",
        "|---|---|",
        *fields,
        "",
        "## Training",
        "",
        f"- steps: {step}, tokens: {tokens:,}",
        f"- final held-out loss: {loss}",
        f"- command: `{command}`",
        "",
        "| data | |",
        "|---|---|",
        *data_rows,
        "",
        "## Loading",
        "",
        *(_swat_loading() if swat else []),
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"model = AutoModelForCausalLM.from_pretrained(DIR{', trust_remote_code=True' if swat else ''})",
        "tokenizer = AutoTokenizer.from_pretrained(DIR)",
        "```",
        "",
    ])


def _swat_description(parameters: int) -> list[str]:
    return [
        f"# SWAT language model ({parameters / 1e6:.2f}M parameters)",
        "",
        "A decoder-only Transformer whose attention is SWAT: a causal sliding window with sigmoid "
        "weights, balanced ALiBi and RoPE (Fu et al. 2025, arXiv 2502.18845), trained with the "
        "`swat` library. With a window it streams text of any length through a rolling KV cache "
        "of constant size.",
    ]


def _other_description(config: PretrainedConfig, parameters: int) -> list[str]:
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type, type(config).__name__)
    return [
        f"# {config.model_type} language model ({parameters / 1e6:.2f}M parameters)",
        "",
        f"A transformers `{architecture}` (model type `{config.model_type}`) trained from scratch with "
        "`swat train`. Its architecture is the transformers model's own; the fields below are those of "
        "its config.",
    ]


def _swat_loading() -> list[str]:
    return [
        "With the `swat-lm` package installed, either `import swat` first, or pass "
        "`trust_remote_code=True` (the directory carries two modules that import `swat`):",
        "",
    ]


def _architecture_fields(config: PretrainedConfig) -> list[str]:
    """The fields of ``config`` that describe its architecture: those its own class adds to
    ``PretrainedConfig``'s, less token ids and bookkeeping."""
    skipped = {f.name for f in dataclasses.fields(PretrainedConfig)} | {
        "model_type", "output_attentions", "use_cache", "pad_token_id", "bos_token_id", "eos_token_id",
        "initializer_range"}
    return [name for name in config.to_dict() if name not in skipped and not name.startswith("_")]

