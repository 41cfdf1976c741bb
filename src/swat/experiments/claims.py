"""The paper's claims, each checked against the numbers of a ``swat reproduce`` run.

A claim is checked only where the configs it compares ran. Each comparison of two configs is
decided only when their difference exceeds the seed spread, the sum of their standard deviations
over seeds (:mod:`swat.experiments.seeds`; 0 with one seed, so that any difference decides).
``holds`` is True when every comparison of the claim is decided its way, False when one is
decided against it, and None (inconclusive) otherwise, or when the claim's premise did not occur
at this scale, e.g. no softmax model formed an attention sink for sigmoid to remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swat.experiments.seeds import spread

SINK_RATIO = 2.0  # a model "has a sink" when its first tokens get at least this multiple of a uniform head's share
STABLE_RATIO = 1.05  # "stays stable": perplexity at the longest length at most 5% above that at the training length
SOFTMAX_MODELS = ("transformer++", "softmax-swa")
SIGMOID_MODELS = ("swat", "sigmoid-swa-rope", "sigmoid-swa-alibi")
VERDICTS = {True: "holds", False: "fails", None: "inconclusive"}


def extrapolation_column(longest: int) -> str:
    """The per-seed ratio ``ppl@{longest}x / ppl@1x`` that the stability claim compares."""
    return f"ppl@{longest}x/1x"


def lower(ours: dict, theirs: dict, column: str, ours_column: str | None = None) -> bool | None:
    """Whether ``ours[column]`` is below ``theirs[column]`` by more than the seed spread (True),
    above it by more (False), or within it (None)."""
    ours_column = ours_column or column
    gap = theirs[column] - ours[ours_column]
    if abs(gap) <= spread(ours, ours_column) + spread(theirs, column):
        return None
    return gap > 0


def all_of(*verdicts: bool | None) -> bool | None:
    """A claim made of several comparisons: False if any fails, True if all hold, else None."""
    if any(v is False for v in verdicts):
        return False
    return True if all(v is True for v in verdicts) else None


def check_claims(summary: Sequence[dict[str, Any]], longest: int) -> list[dict[str, Any]]:
    """``{claim, evidence, holds}`` for every claim whose configs are among the ``summary`` rows
    (one per config: ``name``, ``sink_ratio``, ``ppl@1x``, ``ppl@{longest}x`` and, for the
    stability claim, :func:`extrapolation_column`; each optionally with ``"COLUMN std"``)."""
    rows = {row["name"]: row for row in summary}
    claims = []
    if {"swat", "transformer++"} <= rows.keys():
        claims.append(_stable_beyond_training_length(rows["swat"], rows["transformer++"], longest))
    softmax = [rows[n] for n in SOFTMAX_MODELS if n in rows]
    sigmoid = [rows[n] for n in SIGMOID_MODELS if n in rows]
    if softmax and sigmoid:
        claims.append(_no_attention_sink(softmax, sigmoid))
    if {"swat", "mamba2"} <= rows.keys():
        claims.append(_lower_perplexity("SWAT beats a linear-recurrent model (Mamba2) of the same size and tokens",
                                        rows["swat"], "SWAT", rows["mamba2"], "Mamba2", longest))
    if {"swat", "sigmoid-swa-alibi"} <= rows.keys():
        claims.append(_lower_perplexity("balanced ALiBi slopes beat one-sided ones",
                                        rows["swat"], "balanced", rows["sigmoid-swa-alibi"], "one-sided", longest))
    if {"swat", "swat-no-bias"} <= rows.keys():
        claims.append(_lower_perplexity(
            "our default sigmoid_bias = -log(w) beats b = 0 (a choice of this library, not a paper claim)",
            rows["swat"], "b = -log(w)", rows["swat-no-bias"], "b = 0", longest))
    return claims


def _value(row: dict, column: str) -> str:
    std = row.get(column + " std")
    return f"{row[column]:.3f}" if row.get("seeds", 1) < 2 or std is None else f"{row[column]:.3f} ± {std:.3f}"


def _stable_beyond_training_length(swat: dict, full: dict, longest: int) -> dict[str, Any]:
    column = extrapolation_column(longest)
    return dict(
        claim="SWAT stays stable far beyond the training length where full attention degrades",
        evidence=f"ppl at {longest}x / 1x the training length: SWAT {_value(swat, column)}, "
                 f"Transformer++ {_value(full, column)} (stable: at most {STABLE_RATIO})",
        holds=all_of(lower(swat, {column: STABLE_RATIO}, column), lower(swat, full, column)))


def _no_attention_sink(softmax: Sequence[dict], sigmoid: Sequence[dict]) -> dict[str, Any]:
    soft = max(softmax, key=lambda row: row["sink_ratio"])
    sig = max(sigmoid, key=lambda row: row["sink_ratio"])
    formed = lower({"sink_ratio": SINK_RATIO}, soft, "sink_ratio")
    return dict(
        claim="sigmoid removes the attention sink",
        evidence=f"weight share on the first tokens relative to a uniform head: softmax models up to "
                 f"{_value(soft, 'sink_ratio')} ({soft['name']}), sigmoid models up to "
                 f"{_value(sig, 'sink_ratio')} ({sig['name']})"
                 + ("" if formed else f" (no softmax model formed a sink beyond the spread, ratio {SINK_RATIO})"),
        holds=lower(sig, soft, "sink_ratio") if formed else None)


def _lower_perplexity(claim: str, ours: dict, our_label: str, theirs: dict, their_label: str,
                      longest: int) -> dict[str, Any]:
    """The claim that ``ours`` has lower perplexity than ``theirs`` at 1x and at ``longest`` x."""
    column = f"ppl@{longest}x"
    return dict(
        claim=claim,
        evidence=f"ppl@1x {our_label} {_value(ours, 'ppl@1x')} vs {their_label} {_value(theirs, 'ppl@1x')}; "
                 f"{column} {_value(ours, column)} vs {_value(theirs, column)}",
        holds=all_of(lower(ours, theirs, "ppl@1x"), lower(ours, theirs, column)))
