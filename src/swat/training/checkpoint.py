"""Checkpoints: a loadable Hugging Face model directory plus the state that makes resuming exact.

    RUN_DIR/checkpoints/step_00000200/
        config.json, model.safetensors, generation_config.json   (save_pretrained)
        tokenizer.json, tokenizer_config.json, ...                (the data's tokenizer)
        README.md            the model card (swat.training.model_card)
        training_config.yaml the run's config
        trainer_state.pt     optimiser state, step, RNG states, data fingerprint (plain tensors,
                             numbers and strings, read back with torch.load(weights_only=True))
    RUN_DIR/checkpoints/latest   the name of the newest complete checkpoint
    RUN_DIR/final/               the finished model: the same files without trainer_state.pt

The protocol, recoverable at every instant (``recover_interrupted_writes`` runs at start-up,
under the run's lock, so every temporary it finds belongs to a dead writer):

1. the directory is assembled in a hidden temporary ``.NAME.RANDOM.tmp`` (a crash: the
   temporary is removed at the next start);
2. an existing ``NAME`` is renamed to ``.NAME.old`` (a crash: ``.NAME.old`` is renamed back);
3. the temporary is renamed to ``NAME`` (a crash: ``.NAME.old`` is deleted);
4. ``.NAME.old`` is deleted; for a checkpoint, ``latest`` is rewritten atomically, then the
   checkpoints beyond ``keep_last`` are renamed to ``.NAME.trash`` and deleted.

So ``NAME`` is always absent, the old complete directory, or the new complete one, and
``latest`` always names a complete checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from swat.errors import UserError
from swat.models.hub import REMOTE_CODE
from swat.utils.io import (
    DISK_FULL,
    atomic_write_bytes,
    fsync_dir,
    fsync_tree,
    naming_full_disk,
    temp_dir,
    umask_modes,
)

LATEST = "latest"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "training_config.yaml"
CARD_FILE = "README.md"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_CHECKPOINT_TEMP = re.compile(r"^\.(step_\d+|latest)\.")

# The steps of the protocol at which a crash test may kill the process (``crash_point``).
CRASH_POINTS = ("model-written", "tokenizer-written", "config-written", "card-written", "state-written",
                "old-moved-aside", "new-in-place", "latest-written", "old-checkpoint-trashed")
CRASH_ENV = "SWAT_CRASH_AT"


def crash_point(point: str, where: str | Path) -> None:
    """Kill this process (SIGKILL, as ``kill -9``) if ``$SWAT_CRASH_AT`` names ``point``, for the
    crash tests. ``SWAT_CRASH_AT=POINT@NAME`` only kills where the path's name contains ``NAME``
    (``new-in-place@step_00000004``, ``model-written@final``)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    wanted, _, name = spec.partition("@")
    if wanted == point and name in Path(where).name:
        os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(root: str | Path, step: int, model: PreTrainedModel, model_state: dict[str, torch.Tensor],
                    tokenizer: PreTrainedTokenizerBase | None, trainer_state: dict[str, Any], config_yaml: str,
                    card: str, keep_last: int) -> Path:
    """Write checkpoint ``step`` under ``root`` (``RunDir.checkpoints``) and return its directory:
    ``write_model_dir`` plus ``trainer_state``; then point ``latest`` at it and keep the newest
    ``keep_last``. A full disk is a ``UserError`` that says so (the last checkpoint is intact)."""
    root = Path(root)

    def fill(directory: Path) -> None:
        write_model_dir(directory, model, model_state, tokenizer, config_yaml, card)
        with open(directory / STATE_FILE, "wb") as f:  # a file object: a full disk raises ENOSPC, not "unexpected pos"
            torch.save(trainer_state, f)
        crash_point("state-written", directory)

    with naming_full_disk(DISK_FULL):
        final = write_dir_atomically(root / checkpoint_name(step), fill)
        atomic_write_bytes(root / LATEST, (final.name + "\n").encode())
    crash_point("latest-written", final)
    _remove_old(root, keep_last)
    return final


def save_final(directory: str | Path, model: PreTrainedModel, model_state: dict[str, torch.Tensor],
               tokenizer: PreTrainedTokenizerBase | None, config_yaml: str, card: str) -> Path:
    """The trained model as a Hugging Face model directory (``RunDir.final``), written atomically."""
    with naming_full_disk(DISK_FULL):
        return write_dir_atomically(directory,
                                    lambda d: write_model_dir(d, model, model_state, tokenizer, config_yaml, card))


def write_model_dir(directory: Path, model: PreTrainedModel, model_state: dict[str, torch.Tensor],
                    tokenizer: PreTrainedTokenizerBase | None, config_yaml: str, card: str) -> None:
    """``model.save_pretrained`` with the full ``model_state`` (gathered from every process), the
    tokenizer, the training config that made it and its model card (``README.md``). No Python
    module but swat's own (``swat.models.hub.REMOTE_CODE``) is left in the directory."""
    with quiet_transformers_progress():  # a "Writing model shards" bar per checkpoint clutters the log
        model.save_pretrained(directory, state_dict=model_state)
    crash_point("model-written", directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
        crash_point("tokenizer-written", directory)
    for module in directory.glob("*.py"):
        if module.name not in REMOTE_CODE:  # code a model or tokenizer class copied from elsewhere
            module.unlink()
    (directory / CONFIG_FILE).write_text(config_yaml)
    crash_point("config-written", directory)
    (directory / CARD_FILE).write_text(card)
    crash_point("card-written", directory)


def write_dir_atomically(final: str | Path, fill: Callable[[Path], None]) -> Path:
    """Create directory ``final`` by ``fill``-ing a hidden temporary sibling and renaming it, so
    ``final`` is either absent, the old one, or complete (the protocol above). Returns ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_writes(final.parent, [final.name], temporaries=False)
    tmp = temp_dir(final.parent, f".{final.name}.")
    try:
        fill(tmp)
        umask_modes(tmp)
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = _old(final)
    if final.exists():
        final.rename(old)
        crash_point("old-moved-aside", final)
    tmp.rename(final)
    fsync_dir(final.parent)
    crash_point("new-in-place", final)
    if old.exists():
        shutil.rmtree(old)
    return final


def recover_interrupted_writes(parent: Path, names: list[str], temporaries: bool = True) -> None:
    """Repair what interrupted writes of ``names`` in ``parent`` left: an ``.NAME.old`` whose
    ``NAME`` is missing is the last good ``NAME`` and is renamed back; otherwise it is deleted,
    as is every ``.NAME.trash``; with ``temporaries`` (only when no other process writes here)
    the ``.NAME.*.tmp`` files and directories of dead writers are deleted too."""
    for name in names:
        old, target = _old(parent / name), parent / name
        if old.exists():
            if target.exists():
                shutil.rmtree(old)
            else:
                old.rename(target)
        trash = parent / f".{name}.trash"
        if trash.exists():
            shutil.rmtree(trash)
        for tmp in parent.glob(f".{name}.*.tmp") if temporaries else ():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def recover_checkpoints(root: str | Path) -> None:
    """``recover_interrupted_writes`` for every checkpoint and ``latest`` under ``root``."""
    root = Path(root)
    if root.is_dir():
        names = sorted({m.group(1) for p in root.iterdir() if (m := _CHECKPOINT_TEMP.match(p.name))})
        recover_interrupted_writes(root, names)


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint ``latest`` names (without ``latest``: the newest one), or None if there is
    none. ``latest`` may only name a checkpoint directory of ``root`` itself."""
    root = Path(root)
    pointer = root / LATEST
    found = [p.name for p in list_checkpoints(root)]
    if not pointer.is_file():
        return root / found[-1] if found else None
    name = pointer.read_text(errors="replace").strip()
    if not _STEP_DIR.match(name):
        raise UserError(f"{pointer} names {name!r}, which is not a checkpoint of this run: write one of {found} "
                         "into it, or delete it to resume from the newest checkpoint")
    path = root / name
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is missing or incomplete: write one of "
                                f"{found} into it, or delete it to resume from the newest checkpoint")
    return path


def load_state(checkpoint: str | Path) -> dict[str, Any]:
    """The trainer state of a checkpoint (tensors, numbers, strings only: ``weights_only=True``)."""
    path = Path(checkpoint) / STATE_FILE
    advice = (f"resume from an earlier checkpoint by writing its name into {path.parent.parent / LATEST}, or "
              "start anew with --overwrite")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to read the file means it is damaged
        raise UserError(f"{path} is damaged ({str(error).splitlines()[0][:200]}): {advice}") from None
    missing = [k for k in ("step", "skipped_steps", "optimizer", "rng") if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path} lacks {missing}: {advice}")
    return state


def _old(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _remove_old(root: Path, keep_last: int) -> None:
    for path in list_checkpoints(root)[:-keep_last]:
        trash = path.rename(path.with_name(f".{path.name}.trash"))
        crash_point("old-checkpoint-trashed", path)
        shutil.rmtree(trash)


@contextlib.contextmanager
def quiet_transformers_progress():
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()
