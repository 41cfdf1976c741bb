"""The model card (``README.md``) that ``swat train`` writes into every model directory, as Hub
users expect: what the model is, how it was trained, how well it did, and how to load it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from transformers import PretrainedConfig

SWAT_FIELDS = ("sliding_window", "attention_activation", "alibi", "alibi_retain_scale", "use_rope",
               "rope_theta", "sigmoid_bias", "qk_norm")
SHAPE_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim")


def model_card(config: PretrainedConfig, *, parameters: int, data: Mapping[str, Any], tokens: int,
               step: int, eval_loss: float | None, command: str) -> str:
    """Markdown with a YAML header. ``data``: a description of the training data (its directory
    and manifest fields); ``tokens``: tokens trained on so far; ``eval_loss``: the last held-out
    next-token loss, or ``None`` before the first evaluation."""
    fields = [f"| `{name}` | `{getattr(config, name, None)!r}` |" for name in SHAPE_FIELDS + SWAT_FIELDS
              if hasattr(config, name)]
    data_rows = [f"| {key} | `{value}` |" for key, value in data.items()]
    loss = "not evaluated yet" if eval_loss is None else f"{eval_loss:.4f} (perplexity {_ppl(eval_loss)})"
    return "\n".join([
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [swat, sliding-window-attention, sigmoid-attention, alibi]",
        "---",
        "",
        f"# SWAT language model ({parameters / 1e6:.2f}M parameters)",
        "",
        "A decoder-only Transformer whose attention is SWAT: a causal sliding window with sigmoid "
        "weights, balanced ALiBi and RoPE (Fu et al. 2025, arXiv 2502.18845), trained with the "
        "`swat` library. With a window it streams text of any length through a rolling KV cache "
        "of constant size.",
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
        "With the `swat-lm` package installed, either `import swat` first, or pass "
        "`trust_remote_code=True` (the directory carries two modules that import `swat`):",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)",
        "tokenizer = AutoTokenizer.from_pretrained(DIR)",
        "```",
        "",
    ])


def _ppl(loss: float) -> str:
    return f"{math.exp(min(loss, 50.0)):.2f}"
