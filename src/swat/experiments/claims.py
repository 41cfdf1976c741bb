"""The paper's claims, each checked against the numbers of a ``swat reproduce`` run.

A claim is checked only where the configs it compares ran. ``holds`` is True or False, or None
(inconclusive) when the claim's premise did not occur at this scale, e.g. no softmax model
formed an attention sink for sigmoid to remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SINK_RATIO = 2.0  # a model "has a sink" when its first tokens get at least this multiple of a uniform head's share
STABLE_RATIO = 1.05  # "stays stable": perplexity at the longest length at most 5% above that at the training length
SOFTMAX_MODELS = ("transformer++", "softmax-swa")
SIGMOID_MODELS = ("swat", "sigmoid-swa-rope", "sigmoid-swa-alibi")


def check_claims(summary: Sequence[dict[str, Any]], longest: int) -> list[dict[str, Any]]:
    """``{claim, evidence, holds}`` for every claim whose configs are among the ``summary`` rows
    (one per config: ``name``, ``sink_ratio`` and the perplexities ``ppl@1x`` and ``ppl@{longest}x``
    at 1x and ``longest`` times the training length)."""
    rows = {row["name"]: row for row in summary}
    claims = []
    if {"swat", "transformer++"} <= rows.keys():
        claims.append(_stable_beyond_training_length(rows["swat"], rows["transformer++"], longest))
    softmax = [rows[n] for n in SOFTMAX_MODELS if n in rows]
    sigmoid = [rows[n] for n in SIGMOID_MODELS if n in rows]
    if softmax and sigmoid:
        claims.append(_no_attention_sink(softmax, sigmoid))
    if {"swat", "sigmoid-swa-alibi"} <= rows.keys():
        claims.append(_lower_perplexity("balanced ALiBi slopes beat one-sided ones",
                                        rows["swat"], "balanced", rows["sigmoid-swa-alibi"], "one-sided", longest))
    if {"swat", "swat-no-bias"} <= rows.keys():
        claims.append(_lower_perplexity(
            "our default sigmoid_bias = -log(w) beats b = 0 (a choice of this library, not a paper claim)",
            rows["swat"], "b = -log(w)", rows["swat-no-bias"], "b = 0", longest))
    return claims


def _stable_beyond_training_length(swat: dict, full: dict, longest: int) -> dict[str, Any]:
    column = f"ppl@{longest}x"
    swat_ratio, full_ratio = swat[column] / swat["ppl@1x"], full[column] / full["ppl@1x"]
    return dict(
        claim="SWAT stays stable far beyond the training length where full attention degrades",
        evidence=f"ppl at {longest}x / 1x the training length: SWAT {swat_ratio:.3f}, "
                 f"Transformer++ {full_ratio:.3f}",
        holds=bool(swat_ratio <= STABLE_RATIO and swat_ratio < full_ratio))


def _no_attention_sink(softmax: Sequence[dict], sigmoid: Sequence[dict]) -> dict[str, Any]:
    soft = max(row["sink_ratio"] for row in softmax)
    sig = max(row["sink_ratio"] for row in sigmoid)
    formed = soft >= SINK_RATIO
    return dict(
        claim="sigmoid removes the attention sink",
        evidence=f"weight share on the first tokens relative to a uniform head: softmax models up to "
                 f"{soft:.2f}, sigmoid models up to {sig:.2f}"
                 + ("" if formed else f" (no softmax model formed a sink, ratio < {SINK_RATIO})"),
        holds=bool(sig < soft) if formed else None)


def _lower_perplexity(claim: str, ours: dict, our_label: str, theirs: dict, their_label: str,
                      longest: int) -> dict[str, Any]:
    """The claim that ``ours`` has lower perplexity than ``theirs`` at 1x and at ``longest`` x."""
    column = f"ppl@{longest}x"
    return dict(
        claim=claim,
        evidence=f"ppl@1x {our_label} {ours['ppl@1x']:.3f} vs {their_label} {theirs['ppl@1x']:.3f}; "
                 f"{column} {ours[column]:.3f} vs {theirs[column]:.3f}",
        holds=bool(ours["ppl@1x"] < theirs["ppl@1x"] and ours[column] < theirs[column]))
