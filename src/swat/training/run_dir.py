"""The layout of a training run directory, in one place::

    RUN/config.yaml          the run's training config (model, data, optimisation)
    RUN/metrics.jsonl        one JSON object per logged step
    RUN/checkpoints/         step_XXXXXXXX/ checkpoints and the ``latest`` pointer
    RUN/final/               the finished model (a Hugging Face model directory)
    RUN/tensorboard/         TensorBoard event files (log.tensorboard=true)
    RUN/.lock                held (``flock``) by the process training in RUN
    RUN/.swat-run            the ownership marker: the run's identity, written when the run starts

A directory is a run only if it holds the marker: swat resumes, replaces or deletes nothing in a
directory it did not start a run in (``--overwrite`` aside), and never a file inside ``final/``
or a checkpoint that it did not write (``RunDir.open`` is the policy). Every module that reads or
writes a run goes through :class:`RunDir` rather than spelling the names.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swat.errors import UserError
from swat.models.hub import REMOTE_CODE
from swat.training import checkpoint as ckpt
from swat.utils.io import ExclusiveLock, atomic_write_bytes, atomic_write_json

# The names swat writes in a model directory (final/, a checkpoint): save_pretrained's model,
# config and tokenizer files, swat's own modules, the model card, the training config and state.
_MODEL_FILE = re.compile(r"^(config\.json|generation_config\.json|model(-\d{5}-of-\d{5})?\.safetensors"
                         r"|model\.safetensors\.index\.json|tokenizer.*|special_tokens_map\.json|added_tokens\.json"
                         r"|vocab\.(json|txt)|merges\.txt|.*\.model|chat_template\.(jinja|json)|README\.md"
                         rf"|{re.escape(ckpt.CONFIG_FILE)}|{re.escape(ckpt.STATE_FILE)}"
                         + "".join(f"|{re.escape(name)}" for name in REMOTE_CODE) + ")$")


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

    @property
    def marker(self) -> Path:
        return self.root / ".swat-run"

    def owned_paths(self) -> list[Path]:
        """The names a run writes in its directory (the lock file aside)."""
        return [self.config, self.metrics, self.checkpoints, self.final, self.tensorboard]

    def is_finished(self) -> bool:
        """True once the run's final model is complete."""
        return (self.final / "config.json").is_file()

    def holds_run(self) -> bool:
        """True if swat started a run (finished or not) here: the directory holds its marker."""
        return self.marker.is_file()

    def foreign_entries(self) -> list[str]:
        """Names in the directory that no run writes (another program's files); without the
        marker, every name (a ``config.yaml`` of another program is not a run's)."""
        if not self.root.is_dir():
            return []
        ours = {p.name for p in self.owned_paths()} if self.holds_run() else set()
        ours |= {self.lock_file.name, self.marker.name}
        return sorted(p.name for p in self.root.iterdir() if p.name not in ours and not _is_run_temp(p.name))

    def foreign_model_files(self) -> list[str]:
        """Files inside ``final/`` and the checkpoints that swat does not write there (paths
        relative to the run): resuming replaces those directories, so it refuses while any is there."""
        dirs = [self.final, *ckpt.list_checkpoints(self.checkpoints)]
        return sorted(str(path.relative_to(self.root)) for directory in dirs if directory.is_dir()
                      for path in directory.iterdir() if path.is_dir() or not _MODEL_FILE.match(path.name))

    def own_config(self) -> Path:
        """The run's config (``config.yaml``), which ``swat train --out RUN --resume`` continues
        with when no ``--config`` is given; a directory that holds no run swat started is refused."""
        if not (self.holds_run() and self.config.is_file()):
            raise UserError(f"--resume without --config continues the run in --out with its own config, but "
                            f"{self.root} holds no run swat started (no {self.marker.name} marker and "
                            f"{self.config.name}): pass the --out of a run, or --config (and --set) for a new one")
        return self.config

    def lock(self) -> ExclusiveLock:
        """Take the run's lock (creating the directory): one process trains in a run directory at
        a time; ``FileExistsError`` if another process holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return ExclusiveLock(self.lock_file, f"{self.root} is in use by another training process (pid {{pid}}): "
                                             "wait for it to finish, or choose another --out")

    def clear(self) -> None:
        """Delete what a run wrote here (config, metrics, checkpoints, final model, TensorBoard
        logs, temporary files, the marker), and nothing else."""
        for path in [*self.owned_paths(), self.marker]:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for path in self.root.iterdir():
            if _is_run_temp(path.name):
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    @classmethod
    def open(cls, root: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
             check_resumable: Callable[[dict[str, Any], Path], None] | None = None, is_main: bool = True,
             any_process: Callable[[bool], bool] = bool, barrier: Callable[[], None] = lambda: None) -> OpenRun:
        """Take the run directory ``root`` for a run: lock it (the main process), repair what an
        interrupted run left, refuse what the run may not touch, and choose the checkpoint to
        resume from; :meth:`OpenRun.start` then writes the marker and the config. Nothing a run
        writes is there before ``start``, so a launch refused in between (its config, the data, the
        number of processes) leaves nothing that blocks the corrected one (``OpenRun.release``).
        ``resume`` continues the run there (only a run swat started there, and only while
        ``final/`` and the checkpoints hold nothing but swat's files); ``overwrite`` replaces it
        (another program's files at the top level are left alone); neither: the directory must be
        new or empty. ``check_resumable(saved_config, checkpoint)`` refuses a config the checkpoint
        cannot continue. Under several processes ``any_process`` (whether a flag is true on any of
        them) and ``barrier`` keep them in step."""
        if resume and overwrite:
            raise UserError("--resume continues the run in --out and --overwrite replaces it: pass only one")
        run = cls(root)
        run._refuse_foreign(resume, overwrite)  # before the lock, which adds a file there
        opened, failure = OpenRun(run, None, overwrite=overwrite, is_main=is_main, barrier=barrier), None
        if is_main:
            opened.made_root, opened.made_lock_file = not run.root.exists(), not run.lock_file.exists()
            try:
                opened.lock = run.lock()
                ckpt.recover_interrupted_writes(run.root, [run.final.name, run.config.name, run.metrics.name])
                ckpt.recover_checkpoints(run.checkpoints)
            except OSError as error:
                failure = error
        if any_process(failure is not None):
            opened.release()
            raise failure or FileExistsError(f"{run.root}: the main process could not take the run directory")
        try:
            run._choose_checkpoint(opened, resume, overwrite, check_resumable, is_main)
        except BaseException:
            opened.release()
            raise
        return opened

    def _refuse_foreign(self, resume: bool, overwrite: bool) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise FileExistsError(f"{self.root} is a file, not a run directory: choose another --out")
        foreign = self.foreign_entries()
        if resume and not self.holds_run() and foreign:
            raise UserError(f"{self.root} is not a run swat started (no {self.marker.name} marker; it holds "
                            f"{foreign[:5]}): --resume continues only swat's own runs and leaves other files "
                            "alone; choose another --out")
        if foreign and not overwrite and not self.holds_run():
            raise FileExistsError(f"{self.root} is not empty and is not a run directory (it holds {foreign[:5]}): "
                                  "choose an empty or new --out, or pass --overwrite to train there anyway "
                                  "(other files are left alone)")
        inside = self.foreign_model_files() if resume and self.holds_run() else []
        if inside:
            raise UserError(f"{self.root} holds files swat did not write where a resumed run replaces its own "
                            f"({inside[:5]}): move them out of the run directory, then resume")

    def _choose_checkpoint(self, opened: OpenRun, resume: bool, overwrite: bool,
                           check_resumable: Callable[[dict[str, Any], Path], None] | None, is_main: bool) -> None:
        latest = ckpt.latest_checkpoint(self.checkpoints)
        if not resume:
            if self.holds_run() and not overwrite:
                what = ("a finished run" if self.is_finished() else
                        f"a run (last checkpoint {latest.name})" if latest is not None else "a run's files")
                raise FileExistsError(f"{self.root} already holds {what}: pass --resume to continue it, --overwrite "
                                      "to replace it, or another --out")
        elif latest is not None:
            opened.checkpoint = latest
            opened.saved_config = yaml.safe_load((latest / ckpt.CONFIG_FILE).read_text())
            if check_resumable is not None:
                check_resumable(opened.saved_config, latest)
        elif self.is_finished():
            raise FileExistsError(f"{self.root} holds a finished model ({self.final.name}/) but no checkpoint to "
                                  "resume from: pass --overwrite to train a new one there, or choose another --out")
        elif is_main:
            print(f"--resume: no checkpoint in {self.checkpoints}, starting from step 0")

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


@dataclass
class OpenRun:
    """A run directory taken by ``RunDir.open``: its lock (the main process's), the checkpoint to
    resume from with its training config (None: a run from step 0), and what ``start`` needs."""

    run: RunDir
    lock: ExclusiveLock | None
    checkpoint: Path | None = None
    saved_config: dict[str, Any] | None = None
    overwrite: bool = False
    is_main: bool = True
    barrier: Callable[[], None] = lambda: None
    made_root: bool = False  # RunDir.open created the directory
    made_lock_file: bool = False
    started: bool = False

    def start(self, config_yaml: str) -> None:
        """Begin the run, once every check has passed: replace the old run (``overwrite``), write
        the marker (a new run) and the run's config."""
        self.barrier()  # every process has checked what it needs before the directory changes
        if self.is_main:
            if self.overwrite:
                self.run.clear()
            if not self.run.holds_run():
                atomic_write_json(self.run.marker, {"swat_run": uuid.uuid4().hex,
                                                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            atomic_write_bytes(self.run.config, config_yaml.encode())
        self.started = True
        self.barrier()

    def release(self) -> None:
        """Release the lock. Before ``start`` (a refused launch) also remove the lock file and the
        directory that ``RunDir.open`` made, so that nothing of the launch is left in ``--out``
        (the file is removed while the lock is held, so no other process holds a lock on it)."""
        if self.lock is None:
            return
        if not self.started:
            if self.made_lock_file:
                self.run.lock_file.unlink(missing_ok=True)
            if self.made_root:
                with contextlib.suppress(OSError):  # not empty: the repairs or another process wrote there
                    self.run.root.rmdir()
        self.lock.release()
        self.lock = None
