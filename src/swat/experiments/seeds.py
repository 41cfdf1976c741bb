"""Several seeds of one config: their mean and spread, column by column.

A config trained with ``n`` seeds gives ``n`` rows of numbers (perplexities, passkey accuracies,
attention statistics). :func:`aggregate_seeds` turns them into one row per config holding the
mean of each column and, under ``"COLUMN std"``, the sample standard deviation over the seeds
(``ddof = 1``; 0 for a single seed). NaN values (an evaluation that does not apply, e.g. the sink
ratio of a recurrent model) are left out; a column with no finite value stays NaN.
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
