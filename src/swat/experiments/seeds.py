"""Several seeds of one config: their mean and spread, column by column.

A config trained with ``n`` seeds gives ``n`` rows of numbers (perplexities, passkey accuracies,
attention statistics). :func:`aggregate_seeds` turns them into one row per config holding the
mean of each column and, under ``"COLUMN std"``, the sample standard deviation over the seeds
(``ddof = 1``; 0 for a single seed). NaN values (an evaluation that does not apply, e.g. the sink
ratio of a recurrent model) are left out; a column with no finite value stays NaN.

Two configs trained with the same seed pair up (:func:`by_seed`), and the claims
(:mod:`swat.experiments.claims`) take the mean of the per-seed differences with its Student's t
interval (:func:`mean_interval`); :func:`t_quantile` computes the quantile exactly from the closed
form of t's distribution for whole degrees of freedom, so no statistics package is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

STD_SUFFIX = " std"


def aggregate_seeds(rows: Sequence[dict[str, Any]], key: str = "name") -> list[dict[str, Any]]:
    """One row per distinct ``key`` (in order of first appearance): text columns from its first
    row, ``seeds`` (how many rows), and each numeric column's mean and ``"COLUMN std"``."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    aggregated = []
    for group in groups.values():
        first = group[0]
        row = {column: value for column, value in first.items() if not _is_number(value)}
        row["seeds"] = len(group)
        for column, value in first.items():
            if column == "seed" or not _is_number(value):
                continue
            values = np.array([float(r[column]) for r in group])
            finite = values[np.isfinite(values)]
            row[column] = float(finite.mean()) if len(finite) else math.nan
            row[column + STD_SUFFIX] = (float(finite.std(ddof=1)) if len(finite) > 1
                                        else 0.0 if len(finite) else math.nan)
        aggregated.append(row)
    return aggregated


def spread(row: dict[str, Any], column: str) -> float:
    """The standard deviation over seeds of ``row[column]`` (0 for a row without one)."""
    value = row.get(column + STD_SUFFIX, 0.0)
    return 0.0 if value is None or math.isnan(value) else float(value)


def format_spread(row: dict[str, Any], column: str, digits: int = 3) -> str | float:
    """``"mean ± std"`` for a row of several seeds, the plain value for one."""
    mean = row[column]
    if row.get("seeds", 1) < 2 or not math.isfinite(mean):
        return mean
    return f"{mean:.{digits}f} ± {spread(row, column):.{digits}f}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def by_seed(rows: Sequence[dict[str, Any]], name: str, column: str) -> dict[int, float]:
    """``{seed: row[column]}`` of the config ``name``'s finite values, one per seed."""
    values = {row["seed"]: row[column] for row in rows if row["name"] == name}
    return {seed: float(value) for seed, value in values.items() if _is_number(value) and math.isfinite(value)}


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile (0.5 <= p < 1) of Student's t with ``df`` >= 1 degrees of
    freedom: :func:`t_within` inverted by bisection, exact to double precision."""
    if not 0.5 <= probability < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= probability < 1 and df >= 1, got {probability}, {df}")
    within = 2 * probability - 1
    low, high = 0.0, 1.0
    while t_within(high, df) < within:
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if t_within(middle, df) < within else (low, middle)
    return (low + high) / 2


def t_within(t: float, df: int) -> float:
    """``P(|T| < t)`` for Student's t with an integer ``df``, in closed form (Abramowitz and
    Stegun 26.7.3-4): with ``theta = atan(t / sqrt(df))``, ``c = cos(theta)``, ``s = sin(theta)``,
    ``s (1 + c^2/2 + 1*3/(2*4) c^4 + ...)`` up to ``c^(df-2)`` for even ``df``, and
    ``2/pi (theta + s c (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ...))`` up to ``c^(df-3)`` for odd ``df``."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    term = total = 1.0
    if df % 2 == 0:
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * c2
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    for k in range(1, (df - 1) // 2):
        term *= 2 * k / (2 * k + 1) * c2
        total += term
    return 2 / math.pi * (theta + s * math.sqrt(c2) * total)


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """``(mean, low, high)``: the mean of ``values`` and its two-sided ``level`` interval,
    ``mean -/+ t_((1+level)/2, n-1) * std / sqrt(n)`` (sample std, ``ddof = 1``); None for fewer
    than two values, where no spread can be estimated."""
    n = len(values)
    if n < 2:
        return None
    mean = float(np.mean(values))
    half = t_quantile((1 + level) / 2, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half
