"""Attention diagnostics: where each head puts its weight.

For every layer and head, over the queries of some held-out text:

- **sink share**: the fraction of a query's total weight that lands on the first ``s`` tokens of
  the text (the "attention sink" softmax models develop), over the queries whose window contains
  them; ``sink ratio`` divides it by the share a uniform head would give them (``s / visible``);
- **total weight** ``sum_j a_ij``: exactly 1 under softmax, free under sigmoid (docs/spec.md
  section 1: no normalisation over keys, so nothing forces leftover mass onto a sink);
- **weight variance**: the variance of ``a_ij`` over the keys query ``i`` sees.

The weights are the model's own: ``output_attentions=True`` returns each layer's dense weights
(:func:`swat.layers.attention_weights`, the op's weights, through which that forward computes
its outputs). Another transformers attention model is run with its ``eager`` attention for the
diagnosis (SDPA returns no weights); a recurrent model (Mamba2) has no attention weights, so the
diagnosis does not apply to it and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import PreTrainedModel

from swat.errors import UserError
from swat.evaluation.model_info import has_attention, model_kind
from swat.evaluation.results import markdown_table, save_figure, write_outputs
from swat.ops.reference import band_mask

STATISTICS = {"sink_share": "sink share", "sink_ratio": "sink ratio (vs uniform)",
              "total_weight": "total weight per query", "weight_variance": "weight variance"}


def head_statistics(weights: torch.Tensor, window: int | None, sink_tokens: int) -> dict[str, torch.Tensor]:
    """Per-head statistics (each ``[heads]``) of full-sequence weights ``[batch, heads, n, n]``."""
    n = weights.shape[-1]
    positions = torch.arange(n, device=weights.device)
    visible = band_mask(n, n, window, weights.device)  # [n, n]: the band, docs/spec.md section 1
    count = visible.sum(-1).to(weights.dtype)  # keys each query sees
    total = weights.sum(-1)  # [batch, heads, n]
    mean = total / count
    variance = ((weights - mean[..., None]) ** 2 * visible).sum(-1) / count
    sees_sink = (positions >= sink_tokens) & visible[:, :sink_tokens].all(-1)
    if not bool(sees_sink.any()):
        raise UserError(f"no query sees all of the first {sink_tokens} tokens and is not one of them: "
                        "use a longer text or fewer --sink-tokens")
    sink = weights[..., sink_tokens:, :sink_tokens].sum(-1)[..., sees_sink[sink_tokens:]]
    share = sink / total[..., sees_sink]
    uniform = sink_tokens / count[sees_sink]
    return dict(sink_share=share.mean((0, 2)), sink_ratio=(share / uniform).mean((0, 2)),
                total_weight=total.mean((0, 2)), weight_variance=variance.mean((0, 2)))


@torch.inference_mode()
def diagnose_attention(
    model: PreTrainedModel, sequences: torch.Tensor, *, sink_tokens: int = 4, label: str = "model"
) -> dict[str, Any]:
    """Statistics per layer and head over ``sequences [batch, n]`` (one full forward, no cache)."""
    config = model.config
    if not has_attention(config):
        raise UserError(f"{label} is {model_kind(config)}: it has no attention weights, so the attention "
                        "diagnosis does not apply to it (diagnose models with attention, e.g. swat or llama)")
    attentions = _attention_weights(model, sequences.to(model.device))
    if not attentions or len(attentions) != config.num_hidden_layers or attentions[0] is None:
        raise UserError(f"{label} returned no attention weights for output_attentions=True: "
                           "diagnose a swat model (or another model that returns them)")
    window = getattr(config, "sliding_window", None)
    layers = []
    for weights in attentions:
        stats = head_statistics(weights.double(), window, sink_tokens)
        layers.append({name: value.tolist() for name, value in stats.items()})
    alibi = getattr(config, "alibi", "none")
    return dict(model=label, kind=model_kind(config), window=window,
                activation=getattr(config, "attention_activation", "softmax"),
                alibi=alibi if isinstance(alibi, str) else list(alibi),
                sink_tokens=sink_tokens, sequences=sequences.shape[0], length=sequences.shape[1],
                layers=layers, mean={name: float(np.mean([layer[name] for layer in layers])) for name in STATISTICS})


def _attention_weights(model: PreTrainedModel, ids: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """Each layer's weights ``[batch, heads, n, n]``, from a forward with ``output_attentions``;
    a transformers model whose attention kernel returns none (SDPA, flash) runs with ``eager``
    attention for it, then gets its own back."""
    implementation = getattr(model.config, "_attn_implementation", None)
    switch = implementation not in (None, "eager") and hasattr(model, "set_attn_implementation") \
        and model.config.model_type != "swat"
    if switch:
        model.set_attn_implementation("eager")
    try:
        return model(ids, use_cache=False, output_attentions=True).attentions
    finally:
        if switch:
            model.set_attn_implementation(implementation)


def attention_markdown(results: Sequence[dict[str, Any]]) -> str:
    text = "## Attention diagnostics (means over layers and heads)\n\n"
    text += markdown_table(["model", "activation", "kind"] + list(STATISTICS.values()),
                           [[r["model"], r["activation"], r["kind"]] + [r["mean"][name] for name in STATISTICS]
                            for r in results], digits=4)
    for r in results:
        text += f"\n### {r['model']} per layer and head (first {r['sink_tokens']} tokens = sink)\n\n"
        rows = [[layer, head] + [stats[name][head] for name in STATISTICS]
                for layer, stats in enumerate(r["layers"]) for head in range(len(stats["sink_share"]))]
        text += markdown_table(["layer", "head"] + list(STATISTICS.values()), rows, digits=4)
    return text


def plot_attention(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One row per model, one column per statistic: heat maps over (layer, head), one colour
    scale per statistic so that models compare at a glance."""
    names = list(STATISTICS)
    fig, axes = plt.subplots(len(results), len(names), figsize=(3.3 * len(names), 2.2 * len(results) + 0.8),
                             squeeze=False, constrained_layout=True)
    for col, name in enumerate(names):
        matrices = [np.array([layer[name] for layer in r["layers"]]) for r in results]
        low, high = min(m.min() for m in matrices), max(m.max() for m in matrices)
        for row, (r, matrix) in enumerate(zip(results, matrices, strict=True)):
            ax = axes[row, col]
            image = ax.imshow(matrix, vmin=low, vmax=high, cmap="magma", aspect="auto")
            ax.set_xticks(range(matrix.shape[1]))
            ax.set_yticks(range(matrix.shape[0]))
            if row == 0:
                ax.set_title(STATISTICS[name], fontsize=10)
            if row == len(results) - 1:
                ax.set_xlabel("head")
            if col == 0:
                ax.set_ylabel(f"{r['model']}\nlayer", fontsize=9)
        fig.colorbar(image, ax=axes[:, col].tolist(), location="bottom", shrink=0.8, aspect=30)
    return save_figure(fig, path)


def write_attention_outputs(results: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    return write_outputs(out, "attention", list(results), attention_markdown(results), lambda path: plot_attention(results, path))
