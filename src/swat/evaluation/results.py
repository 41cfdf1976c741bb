"""Writing an evaluation's outputs: JSON, a Markdown table and a PNG, each written atomically
(to a temporary name in the same directory, then renamed) so a crash never leaves half a file."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from swat.utils.io import atomic_write_bytes  # noqa: E402


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    text = json.dumps(_finite_or_none(data), indent=2, allow_nan=False) + "\n"
    _atomic_write(path, text.encode())
    return path


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    _atomic_write(path, text.encode())
    return path


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120, bbox_inches="tight")
    _atomic_write(path, png.getvalue())
    plt.close(fig)
    return path


def format_number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub Markdown table; floats get ``digits`` decimals, NaN/None show as ``-``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(format_number(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out: str | Path, name: str, data: Any, markdown: str, plot) -> dict[str, Path]:
    """An evaluation's three outputs in ``out``: ``NAME.json`` (``data``), ``NAME.md`` (``markdown``)
    and ``NAME.png`` (drawn by ``plot(path)``, which returns the path written)."""
    out = Path(out)
    return dict(
        json=write_json(out / f"{name}.json", data),
        markdown=write_text(out / f"{name}.md", markdown),
        png=plot(out / f"{name}.png"),
    )
