"""Writing an evaluation's outputs: JSON, a Markdown table and a PNG, each written atomically
(to a temporary name in the same directory, then renamed) so a crash never leaves half a file.

Results replace only results: ``DIR/.swat-results.json`` records the digest of every file swat
wrote in ``DIR``, and every command that writes results calls ``claim_outputs`` before any work,
which refuses a file that is not there with that content (another program's, or one a user edited
since) unless told to replace it (``--overwrite``). Python callers choose their paths themselves."""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from swat.errors import UserError  # noqa: E402
from swat.utils.io import atomic_write_bytes, atomic_write_json  # noqa: E402

LEDGER = ".swat-results.json"  # {file name: sha256 of the content swat wrote}
OUTPUT_KINDS = ("json", "md", "png")  # the files ``write_outputs`` writes for an evaluation NAME


def claim_outputs(out: str | Path, names: Sequence[str], overwrite: bool = False) -> None:
    """Check, before any work, that the files ``names`` in ``out`` may be written: absent, or
    written by swat and unchanged since. ``overwrite`` adopts the others (they are replaced);
    without it they are a ``UserError`` that says what to do."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory: choose another --out")
    foreign = [name for name in names if not _is_ours(out / name)]
    if foreign and not overwrite:
        raise UserError(f"{out} holds {', '.join(foreign)}, which swat did not write (or which changed since it "
                        "did): pass --overwrite to replace them, or choose another --out")
    if foreign:
        _record(out, {name: _digest((out / name).read_bytes()) for name in foreign if (out / name).is_file()})


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ledger(out: Path) -> dict[str, str]:
    try:
        ledger = json.loads((out / LEDGER).read_text())
    except (OSError, ValueError):
        return {}
    return ledger if isinstance(ledger, dict) else {}


def _is_ours(path: Path) -> bool:
    if not path.exists():
        return True
    return path.is_file() and _ledger(path.parent).get(path.name) == _digest(path.read_bytes())


def _record(out: Path, digests: dict[str, str]) -> None:
    atomic_write_json(out / LEDGER, {**_ledger(out), **digests})


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    _record(path.parent, {path.name: _digest(data)})


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
