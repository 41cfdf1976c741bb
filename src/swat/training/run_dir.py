"""The layout of a training run directory, in one place::

    RUN/config.yaml          the run's training config (model, data, optimisation)
    RUN/metrics.jsonl        one JSON object per logged step
    RUN/checkpoints/         step_XXXXXXXX/ checkpoints and the ``latest`` pointer
    RUN/final/               the finished model (a Hugging Face model directory)
    RUN/tensorboard/         TensorBoard event files (log.tensorboard=true)

Every module that reads or writes a run goes through :class:`RunDir` rather than spelling the
names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def is_finished(self) -> bool:
        """True once the run's final model is complete."""
        return (self.final / "config.json").is_file()

    @classmethod
    def of_model(cls, model_dir: str | os.PathLike) -> RunDir | None:
        """The run a model directory came from (its ``final/`` or one of its checkpoints), or
        ``None`` for a model directory that is not inside a run."""
        path = Path(model_dir).resolve()
        for candidate in (path.parent, path.parent.parent):
            if RunDir(candidate).config.is_file():
                return cls(candidate)
        return None
