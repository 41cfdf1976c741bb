"""Checkpoints: a loadable Hugging Face model directory plus the state that makes resuming exact.

    RUN_DIR/checkpoints/step_00000200/
        config.json, model.safetensors, generation_config.json   (save_pretrained)
        tokenizer.json, tokenizer_config.json, ...                (the data's tokenizer)
        trainer_state.pt     optimiser state, step, RNG states (plain tensors and numbers,
                             read back with torch.load(weights_only=True))
        training_config.yaml the run's config
    RUN_DIR/checkpoints/latest   the name of the newest complete checkpoint
    RUN_DIR/final/               the finished model: the same files without trainer_state.pt

A checkpoint is assembled in a hidden temporary directory and renamed into place, then ``latest``
is rewritten atomically, then the oldest checkpoints beyond ``keep_last`` are removed: a crash at
any moment leaves ``latest`` naming a complete checkpoint.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from swat.utils.io import atomic_write_bytes

LATEST = "latest"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "training_config.yaml"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def save_checkpoint(root: str | Path, step: int, model: PreTrainedModel, model_state: dict[str, torch.Tensor],
                    tokenizer: PreTrainedTokenizerBase | None, trainer_state: dict[str, Any], config_yaml: str,
                    keep_last: int) -> Path:
    """Write checkpoint ``step`` under ``root`` (``RunDir.checkpoints``) and return its directory:
    ``write_model_dir`` plus ``trainer_state``; then point ``latest`` at it and keep the newest
    ``keep_last``."""
    root = Path(root)

    def fill(directory: Path) -> None:
        write_model_dir(directory, model, model_state, tokenizer, config_yaml)
        torch.save(trainer_state, directory / STATE_FILE)

    final = write_dir_atomically(root / checkpoint_name(step), fill)
    atomic_write_bytes(root / LATEST, (final.name + "\n").encode())
    _remove_old(root, keep_last)
    return final


def save_final(directory: str | Path, model: PreTrainedModel, model_state: dict[str, torch.Tensor],
               tokenizer: PreTrainedTokenizerBase | None, config_yaml: str) -> Path:
    """The trained model as a Hugging Face model directory (``RunDir.final``), written atomically."""
    return write_dir_atomically(directory, lambda d: write_model_dir(d, model, model_state, tokenizer, config_yaml))


def write_model_dir(directory: Path, model: PreTrainedModel, model_state: dict[str, torch.Tensor],
                    tokenizer: PreTrainedTokenizerBase | None, config_yaml: str) -> None:
    """``model.save_pretrained`` with the full ``model_state`` (gathered from every process), the
    tokenizer, and the training config that made it."""
    with quiet_transformers_progress():  # a "Writing model shards" bar per checkpoint clutters the log
        model.save_pretrained(directory, state_dict=model_state)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    (directory / CONFIG_FILE).write_text(config_yaml)


def write_dir_atomically(final: str | Path, fill: Callable[[Path], None]) -> Path:
    """Create directory ``final`` by ``fill``-ing a hidden temporary sibling and renaming it, so
    ``final`` is either absent, the old one, or complete. Returns ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    old = None
    try:
        fill(tmp)
        if final.exists():
            old = final.rename(final.with_name(f".{final.name}.old"))
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint ``latest`` names, or None if there is none."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is missing or incomplete; point it at one "
                                f"of {[p.name for p in list_checkpoints(root)]} or start a new run")
    return path


def load_state(checkpoint: str | Path) -> dict[str, Any]:
    """The trainer state of a checkpoint (tensors, numbers, strings only: ``weights_only=True``)."""
    return torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)


def _remove_old(root: Path, keep_last: int) -> None:
    for path in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(path)


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
