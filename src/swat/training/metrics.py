"""Metrics as JSON lines (``RUN_DIR/metrics.jsonl``), mirrored to TensorBoard / W&B when asked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from swat.errors import UserError
from swat.training.run_dir import RunDir
from swat.utils.io import atomic_write_bytes


class MetricsLogger:
    """Appends one JSON object per record to ``path``. Only the main process should make one
    with ``enabled=True``; others get a logger that does nothing."""

    def __init__(self, run_dir: RunDir, *, enabled: bool = True, tensorboard: bool = False,
                 wandb: bool = False, wandb_project: str = "swat", config: dict[str, Any] | None = None,
                 resume_step: int | None = None) -> None:
        self.path = run_dir.metrics
        self.enabled = enabled
        self._tb = self._wandb = None
        if not enabled:
            return
        check_loggers(tensorboard, wandb)
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        if tensorboard:
            self._tb = _tensorboard_writer(run_dir.tensorboard)
        if wandb:
            self._wandb = _wandb_run(wandb_project, run_dir.root, config)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        step = record.get("step", 0)
        numbers = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (a run dir or the file itself). A torn last line
    (the process was killed while appending it) is dropped; a damaged earlier line is an error."""
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).metrics
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif number < len(lines):
            raise UserError(f"{path} line {number} is not a JSON record ({line[:60]!r}): delete or fix that line")
    return records


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records after ``step``: a resumed run rewrites the steps after its checkpoint."""
    if path.is_file():
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def check_loggers(tensorboard: bool, wandb: bool) -> None:
    """Refuse a logger whose package is not installed: the trainer asks before the run starts, so
    that the refusal leaves nothing in the run directory."""
    for name, wanted in (("tensorboard", tensorboard), ("wandb", wandb)):
        if wanted and importlib.util.find_spec(name) is None:
            raise UserError(f"log.{name}=true needs the {name} package: pip install {name}, or set log.{name}=false")


def _tensorboard_writer(log_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def _wandb_run(project: str, run_dir: Path, config: dict[str, Any] | None):
    import wandb

    return wandb.init(project=project, name=run_dir.name, dir=str(run_dir), config=config)
