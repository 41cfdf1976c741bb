"""The layout of a training run directory, in one place::

    RUN/config.yaml          the run's training config (model, data, optimisation)
    RUN/metrics.jsonl        one JSON object per logged step
    RUN/checkpoints/         step_XXXXXXXX/ checkpoints and the ``latest`` pointer
    RUN/final/               the finished model (a Hugging Face model directory)
    RUN/tensorboard/         TensorBoard event files (log.tensorboard=true)
    RUN/.lock                held (``flock``) by the process training in RUN

Every module that reads or writes a run goes through :class:`RunDir` rather than spelling the
names.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock``: one process trains in a run directory at a time.
    The operating system drops the lock when the process ends, however it ends (even ``kill -9``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 64).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise FileExistsError(f"{path.parent} is in use by another training process (pid {holder}): wait "
                                  "for it to finish, or choose another --out") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __del__(self) -> None:
        self.release()


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

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def owned_paths(self) -> list[Path]:
        """The names a run writes in its directory (the lock file aside)."""
        return [self.config, self.metrics, self.checkpoints, self.final, self.tensorboard]

    def is_finished(self) -> bool:
        """True once the run's final model is complete."""
        return (self.final / "config.json").is_file()

    def holds_run(self) -> bool:
        """True if a run (finished or not) has written here."""
        return any(path.exists() for path in self.owned_paths())

    def foreign_entries(self) -> list[str]:
        """Names in the directory that no run writes (another program's files)."""
        if not self.root.is_dir():
            return []
        ours = {p.name for p in self.owned_paths()} | {self.lock_file.name}
        return sorted(p.name for p in self.root.iterdir() if p.name not in ours and not _is_run_temp(p.name))

    def lock(self) -> RunLock:
        """Take the run's lock (creating the directory); ``FileExistsError`` if another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return RunLock(self.lock_file)

    def clear(self) -> None:
        """Delete what a run wrote here (config, metrics, checkpoints, final model, TensorBoard
        logs, temporary files), and nothing else."""
        for path in self.owned_paths():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for path in self.root.iterdir():
            if _is_run_temp(path.name):
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    @classmethod
    def of_model(cls, model_dir: str | os.PathLike) -> RunDir | None:
        """The run a model directory came from (its ``final/`` or one of its checkpoints), or
        ``None`` for a model directory that is not inside a run."""
        path = Path(model_dir).resolve()
        for candidate in (path.parent, path.parent.parent):
            if RunDir(candidate).config.is_file():
                return cls(candidate)
        return None


def _is_run_temp(name: str) -> bool:
    """Hidden temporaries of a run's own writes: ``.final.*`` (directory swaps) and the atomic
    writes of ``config.yaml`` and ``metrics.jsonl``."""
    return name.startswith((".final.", ".config.yaml.", ".metrics.jsonl."))
