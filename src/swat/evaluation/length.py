"""Perplexity against context length, and loss against position inside a long sequence.

For each evaluation length ``n`` the held-out token stream is cut into consecutive sequences of
``n`` tokens; every sequence is scored from its first token on (streamed through the rolling
cache where the model has a window) and the perplexity is ``exp`` of the mean next-token loss
over all its positions. A model that extrapolates keeps that number flat as ``n`` grows past its
training length. The position buckets split the longest sequences at the evaluation lengths
(``[0, n_1), [n_1, n_2), ...``): they show whether late positions are predicted as well as early
ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from swat.errors import UserError
from swat.evaluation.heldout import sequences_of
from swat.evaluation.model_info import model_kind
from swat.evaluation.results import markdown_table, save_figure, write_outputs
from swat.inference import streaming_nll
from swat.utils.checks import check_count

_LENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_lengths(spec: str | Sequence[int]) -> list[int]:
    """``"512,1k,2k,1.5k"`` -> ``[512, 1024, 2048, 1536]`` (k = 1024, m = 1024^2), sorted, unique."""
    if not isinstance(spec, str):
        return sorted({int(x) for x in spec})
    lengths = set()
    for part in spec.split(","):
        match = _LENGTH.match(part)
        if not match:
            raise UserError(f"cannot read the length {part!r} in {spec!r}: use integers with optional k/m, e.g. 512,1k,4k")
        value = float(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[match.group(2).lower()]
        if value < 2 or value != int(value):
            raise UserError(f"length {part!r} must be a whole number of tokens >= 2")
        lengths.add(int(value))
    return sorted(lengths)


def _score_sequences(model, tokens, length, max_tokens, batch_size, chunk_size, desc):
    """Next-token losses ``[num_sequences, length - 1]`` of consecutive ``length``-token sequences."""
    sequences = sequences_of(tokens, length, max(1, max_tokens // length))
    losses = []
    for start in tqdm(range(0, len(sequences), batch_size), desc=desc, leave=False, unit="batch"):
        losses.append(streaming_nll(model, sequences[start:start + batch_size], chunk_size).double())
    return torch.cat(losses)


def evaluate_lengths(
    model: PreTrainedModel,
    tokens: torch.Tensor,
    lengths: Sequence[int],
    *,
    max_tokens: int = 65536,
    batch_size: int = 4,
    chunk_size: int = 1024,
    label: str = "model",
) -> dict[str, Any]:
    """Perplexity at each length (about ``max_tokens`` tokens scored per length, at least one
    sequence) and the loss per position bucket of the longest length that fits the text."""
    for name, value in (("max_tokens", max_tokens), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        check_count(name, value)
    lengths = parse_lengths(lengths)
    if not lengths:
        raise UserError("pass at least one evaluation length")
    fitting = [n for n in lengths if n <= len(tokens)]
    if not fitting:
        raise UserError(
            f"the text has {len(tokens)} tokens, fewer than the shortest length {lengths[0]}: "
            "give a longer text or shorter --lengths"
        )
    per_length, losses = [], None
    for n in lengths:
        if n > len(tokens):
            per_length.append(dict(length=n, sequences=0, tokens=0, nll=math.nan, ppl=math.nan))
            continue
        losses = _score_sequences(model, tokens, n, max_tokens, batch_size, chunk_size, f"{label} @ {n}")
        nll = losses.mean().item()
        per_length.append(dict(length=n, sequences=losses.shape[0], tokens=losses.numel(), nll=nll, ppl=math.exp(nll)))
    longest = fitting[-1]
    edges = [0] + [n - 1 for n in fitting]
    buckets = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        nll = losses[:, lo:hi].mean().item()
        buckets.append(dict(start=lo, end=hi, nll=nll, ppl=math.exp(nll)))
    config = model.config
    return dict(
        model=label,
        kind=model_kind(config),
        window=getattr(config, "sliding_window", None),
        activation=getattr(config, "attention_activation", None),
        lengths=per_length,
        bucket_length=longest,
        buckets=buckets,
    )


def length_markdown(results: Sequence[dict[str, Any]]) -> str:
    lengths = [row["length"] for row in results[0]["lengths"]]
    table = markdown_table(
        ["model", "kind"] + [f"ppl @ {n}" for n in lengths],
        [[r["model"], r["kind"]] + [row["ppl"] for row in r["lengths"]] for r in results],
    )
    text = "## Perplexity against context length\n\n" + table
    for r in results:
        text += f"\n### {r['model']}: loss by position within {r['bucket_length']}-token sequences\n\n"
        text += markdown_table(["positions", "loss", "ppl"],
                               [[f"{b['start']}-{b['end'] - 1}", b["nll"], b["ppl"]] for b in r["buckets"]])
    return text


def plot_lengths(results: Sequence[dict[str, Any]], path: str | Path, train_length: int | None = None) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        xs = [row["length"] for row in r["lengths"]]
        left.plot(xs, [row["ppl"] for row in r["lengths"]], marker="o", label=r["model"])
        mids = [(b["start"] + b["end"]) / 2 for b in r["buckets"]]
        right.plot(mids, [b["nll"] for b in r["buckets"]], marker="o", label=r["model"])
    if train_length:
        for ax in (left, right):
            ax.axvline(train_length, color="grey", linestyle=":", label="training length")
    left.set(xscale="log", xlabel="evaluation length (tokens)", ylabel="perplexity",
             title="Perplexity against context length")
    right.set(xscale="log", xlabel="position in the sequence (bucket centre)", ylabel="next-token loss",
              title="Loss by position within the longest sequences")
    lengths = [row["length"] for row in results[0]["lengths"]]
    left.set_xticks(lengths, [str(n) for n in lengths])
    centres = [(b["start"] + b["end"]) / 2 for b in results[0]["buckets"]]
    right.set_xticks(centres, [f"{b['start']}-{b['end'] - 1}" for b in results[0]["buckets"]], rotation=30, fontsize=8)
    for ax in (left, right):
        ax.set_ylim(0, 1.15 * ax.dataLim.ymax)  # from 0, so that a 1% change looks like one (room for the legend)
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_length_outputs(results: Sequence[dict[str, Any]], out: str | Path, train_length: int | None = None) -> dict[str, Path]:
    return write_outputs(out, "length", list(results), length_markdown(results), lambda path: plot_lengths(results, path, train_length))
