"""The paper's claims, each decided from the runs of ``swat reproduce`` paired by seed.

A claim rests on one or more comparisons "A is lower than B" of one column (held-out perplexity,
its growth with the length, the sink ratio), where A and B are configs or a fixed threshold; it
is checked only where the configs it compares ran. Two configs trained with the same seed see
exactly the same batches in the same order (the seed drives the window sampler), so their runs
pair up: for each seed both ran, the difference ``d_s = A_s - B_s``. The comparison's interval is
the two-sided 95% interval of the mean difference over the ``n`` seeds,
``mean(d) -/+ t_(0.975, n-1) * std(d) / sqrt(n)`` (:func:`swat.experiments.seeds.mean_interval`).
It is decided where that interval excludes 0: below 0 it holds, above 0 it fails (each side at
2.5%). A claim holds when all its comparisons hold, fails when one fails, and is inconclusive
otherwise, with fewer than two common seeds (no spread, no interval), or when its premise did not
occur at this scale (e.g. no softmax model formed an attention sink for sigmoid to remove).

Why t over the seeds: it is the interval for a mean whose spread is estimated from the same few
values, and its wide quantiles at small ``n`` (4.30 at three seeds, 2.78 at five) are the honest
price of that. It assumes the differences are roughly normal, which three to five values cannot
check. A sign test needs no such assumption but cannot decide anything at 5% below six seeds
(its smallest two-sided p is ``2 / 2^n``: 0.25 at three seeds, 0.0625 at five), and a bootstrap
of ``n`` values has at most ``C(2n-1, n)`` distinct resamples (10 at three, 126 at five) and a
percentile interval known to be too narrow at such ``n``; so neither is offered as a verdict, and
the per-seed table (:func:`swat.experiments.reproduce.summary_markdown`) shows the signs instead.

The rule used before (a difference of means decided only beyond the sum of the two standard
deviations over seeds, any difference with one seed) is kept beside it under ``spread_rule``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swat.evaluation.results import markdown_table
from swat.experiments.seeds import by_seed, mean_interval

SINK_RATIO = 2.0  # a model "has a sink" when its first tokens get at least this multiple of a uniform head's share
STABLE_RATIO = 1.05  # "stays stable": perplexity at the longest length at most 5% above that at the training length
SOFTMAX_MODELS = ("transformer++", "softmax-swa")
SIGMOID_MODELS = ("swat", "sigmoid-swa-rope", "sigmoid-swa-alibi")
VERDICTS = {True: "holds", False: "fails", None: "inconclusive"}
LABELS = {"swat": "SWAT", "transformer++": "Transformer++", "mamba2": "Mamba2"}


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a config's column over its seeds, or a fixed ``threshold``."""

    label: str
    name: str | None = None
    threshold: float | None = None

    def values(self, rows: Sequence[dict[str, Any]], column: str) -> dict[int, float] | float:
        return self.threshold if self.name is None else by_seed(rows, self.name, column)


def config(name: str, label: str | None = None) -> Side:
    """The side of the config ``name``, shown as ``label`` (default: its usual spelling)."""
    return Side(label or LABELS.get(name, name), name=name)


def threshold(value: float) -> Side:
    """A fixed value, the same for every seed (e.g. :data:`STABLE_RATIO`)."""
    return Side(f"{value:g}", threshold=value)


def extrapolation_column(longest: int) -> str:
    """The per-seed ratio ``ppl@{longest}x / ppl@1x`` that the stability claim compares."""
    return f"ppl@{longest}x/1x"


def compare(rows: Sequence[dict[str, Any]], column: str, first: Side, second: Side) -> dict[str, Any]:
    """The comparison "``first`` is lower than ``second`` in ``column``": the per-seed values and
    differences ``first - second`` over the seeds both have, their mean and 95% interval, and
    ``holds`` from it (True: below 0, False: above 0, None: it contains 0 or there is none);
    ``spread_rule`` is the old rule's ``{first, second: [mean, std or None], holds}``."""
    a, b = first.values(rows, column), second.values(rows, column)
    seeds = sorted(set.intersection(*(set(v) for v in (a, b) if isinstance(v, dict))))
    ours = [a[s] if isinstance(a, dict) else a for s in seeds]
    theirs = [b[s] if isinstance(b, dict) else b for s in seeds]
    differences = [x - y for x, y in zip(ours, theirs, strict=True)]
    interval = mean_interval(differences)
    holds = None if interval is None or interval[1] <= 0 <= interval[2] else interval[2] < 0
    return dict(column=column, first=first.label, second=second.label, seeds=seeds, first_values=ours,
                second_values=theirs, differences=differences,
                mean=float(np.mean(differences)) if differences else math.nan,
                interval=None if interval is None else [interval[1], interval[2]], holds=holds,
                spread_rule=_spread_rule(a, b))


def _spread_rule(a: dict[int, float] | float, b: dict[int, float] | float) -> dict[str, Any]:
    """The old rule on each side's own seeds: decided only where the means differ by more than
    the sum of the standard deviations (``ddof = 1``; 0 for one seed or a threshold)."""
    (first, first_std), (second, second_std) = sides = [_mean_std(v) for v in (a, b)]
    gap = second - first
    holds = None if not math.isfinite(gap) or abs(gap) <= (first_std or 0) + (second_std or 0) else gap > 0
    return dict(first=list(sides[0]), second=list(sides[1]), holds=holds)


def _mean_std(values: dict[int, float] | float) -> tuple[float, float | None]:
    """Mean and standard deviation (None for a threshold or a single seed)."""
    if not isinstance(values, dict):
        return float(values), None
    v = list(values.values())
    return (float(np.mean(v)) if v else math.nan), (float(np.std(v, ddof=1)) if len(v) > 1 else None)


def all_of(*verdicts: bool | None) -> bool | None:
    """A claim made of several comparisons: False if any fails, True if all hold, else None."""
    if any(v is False for v in verdicts):
        return False
    return True if all(v is True for v in verdicts) else None


def claim(text: str, comparisons: Sequence[dict[str, Any]], premise: dict[str, Any] | None = None,
          note: str = "") -> dict[str, Any]:
    """``{claim, comparisons, premise, note, holds, spread_rule}``: ``holds`` from the paired
    intervals, None while the ``premise`` comparison does not hold; ``spread_rule`` likewise from
    the old rule."""
    def verdict(rule: Any) -> bool | None:
        if premise is not None and rule(premise) is not True:
            return None
        return all_of(*(rule(c) for c in comparisons))

    return dict(claim=text, comparisons=list(comparisons), premise=premise, note=note,
                holds=verdict(lambda c: c["holds"]),
                spread_rule=dict(holds=verdict(lambda c: c["spread_rule"]["holds"])))


def check_claims(rows: Sequence[dict[str, Any]], longest: int) -> list[dict[str, Any]]:
    """Every claim whose configs are among the per-seed ``rows`` (one per config and seed:
    ``name``, ``seed``, ``sink_ratio``, ``ppl@1x``, ``ppl@{longest}x`` and, for the stability
    claim, :func:`extrapolation_column`), as :func:`claim` returns it."""
    names = {row["name"] for row in rows}
    claims = []
    if {"swat", "transformer++"} <= names:
        ratio = extrapolation_column(longest)
        claims.append(claim("SWAT stays stable far beyond the training length where full attention degrades",
                            [compare(rows, ratio, config("swat"), threshold(STABLE_RATIO)),
                             compare(rows, ratio, config("swat"), config("transformer++"))]))
    softmax = _highest_sink(rows, SOFTMAX_MODELS)
    sigmoid = _highest_sink(rows, SIGMOID_MODELS)
    if softmax and sigmoid:
        premise = compare(rows, "sink_ratio", threshold(SINK_RATIO), config(softmax))
        claims.append(claim("sigmoid removes the attention sink",
                            [compare(rows, "sink_ratio", config(sigmoid), config(softmax))], premise=premise,
                            note=_sink_premise(premise["holds"], softmax)))
    for ours, theirs, text in (
            (config("swat"), config("mamba2"), "SWAT beats a linear-recurrent model (Mamba2) of the same size and tokens"),
            (config("swat", "balanced"), config("sigmoid-swa-alibi", "one-sided"),
             "balanced ALiBi slopes beat one-sided ones"),
            (config("swat", "b = -log(w)"), config("swat-no-bias", "b = 0"),
             "our default sigmoid_bias = -log(w) beats b = 0 (a choice of this library, not a paper claim)")):
        if {ours.name, theirs.name} <= names:
            claims.append(claim(text, [compare(rows, column, ours, theirs)
                                       for column in ("ppl@1x", f"ppl@{longest}x")]))
    return claims


def _sink_premise(formed: bool | None, softmax: str) -> str:
    sink = f"a sink (sink ratio above {SINK_RATIO:g})"
    return {True: f"premise met: {softmax} formed {sink}",
            False: f"premise not met: no softmax model formed {sink}, not even {softmax}, the one with the most",
            None: f"premise undecided: whether {softmax} formed {sink}"}[formed]


def _highest_sink(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> str | None:
    """The config among ``names`` with the highest mean sink ratio over its seeds (None if none ran)."""
    means = {n: np.mean(list(v.values())) for n in names if (v := by_seed(rows, n, "sink_ratio"))}
    return max(means, key=means.get) if means else None


def claims_markdown(claims: Sequence[dict[str, Any]]) -> str:
    """The claims section of ``summary.md``: one row per claim (each comparison's mean difference
    and 95% interval over the seeds both its configs ran, the verdict, the old rule's numbers and
    verdict), then the per-seed differences of every comparison."""
    counts = sorted({len(x["seeds"]) for c in claims for x in _listed(c)})
    if counts and counts[-1] > 1:
        over = f"{counts[0]} seeds" if len(counts) == 1 else (
            f"the seeds both configs ran ({' or '.join(map(str, counts))} here)")
        text = (f"Over {over}, a claim holds or fails only where the difference it rests on, paired by "
                "seed (the same seed trains both configs on the same batches in the same order), has a 95% "
                "interval (t over the seeds) that excludes 0; otherwise it is inconclusive. A difference is "
                "first - second, and the claim says it is below 0. The old rule (decided where the two means "
                "differ by more than the sum of their standard deviations) is kept in the last two columns.\n\n")
    else:
        text = ("One seed: no interval can be estimated, so every claim is inconclusive (the old rule, in the "
                "last two columns, lets any difference decide); train several seeds (--seeds 0,1,2 or --budget "
                "decisive) for verdicts.\n\n")
    rows = []
    for c in claims:
        listed = _listed(c)
        prefix = ["premise: "] * bool(c["premise"]) + [""] * len(c["comparisons"])
        rows.append([c["claim"] + (f" ({c['note']})" if c["note"] else ""),
                     "; ".join(p + _what(x) for p, x in zip(prefix, listed, strict=True)),
                     "; ".join(_interval(x) for x in listed), VERDICTS[c["holds"]],
                     "; ".join(_old_rule(x) for x in listed), VERDICTS[c["spread_rule"]["holds"]]])
    text += markdown_table(["claim", "difference", "mean [95% interval]", "verdict", "old rule: mean ± std",
                            "old verdict"], rows)
    return text + "\n### Per seed\n\n" + per_seed_markdown(claims)


def _listed(claim: dict[str, Any]) -> list[dict[str, Any]]:
    """A claim's premise (if any), then its comparisons."""
    return ([claim["premise"]] if claim["premise"] else []) + claim["comparisons"]


def per_seed_markdown(claims: Sequence[dict[str, Any]]) -> str:
    """One row per comparison: ``first - second = difference`` for each seed, and how many of
    the differences are below 0."""
    comparisons = [(c["claim"], x) for c in claims for x in _listed(c)]
    seeds = sorted({s for _, x in comparisons for s in x["seeds"]})
    rows = []
    for text, x in comparisons:
        cells = {s: f"{a:.3f} - {b:.3f} = {d:.3f}" for s, a, b, d in
                 zip(x["seeds"], x["first_values"], x["second_values"], x["differences"], strict=True)}
        below = sum(d < 0 for d in x["differences"])
        rows.append([text, _what(x), *(cells.get(s, "-") for s in seeds),
                     f"{below} of {len(x['differences'])} below 0"])
    return markdown_table(["claim", "difference", *(f"seed {s}" for s in seeds), "signs"], rows)


def _what(comparison: dict[str, Any]) -> str:
    return f"{comparison['column']}: {comparison['first']} - {comparison['second']}"


def _interval(comparison: dict[str, Any]) -> str:
    interval = comparison["interval"]
    if interval is None:
        return f"{comparison['mean']:.3f} (no interval: {len(comparison['seeds'])} seed)"
    return f"{comparison['mean']:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _old_rule(comparison: dict[str, Any]) -> str:
    rule = comparison["spread_rule"]
    return " vs ".join(f"{mean:.3f}" + ("" if std is None else f" ± {std:.3f}") for mean, std in (rule["first"], rule["second"]))
