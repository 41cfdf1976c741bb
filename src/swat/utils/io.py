"""Files that readers see either whole or not at all, with the permissions a plain write gives.

Temporary names (``tempfile.mkstemp``/``mkdtemp``) are created private (0600/0700); a file or
directory published by a rename would keep that mode, so every temporary made here is given the
mode a plain ``open``/``mkdir`` would have had under the user's umask (``_umask_mode``)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from swat.errors import UserError

DISK_FULL = "the disk is full: free space and run again with --resume"


def temp_file(directory: str | os.PathLike, prefix: str) -> tuple[int, Path]:
    """``mkstemp(dir=directory, prefix=prefix, suffix=".tmp")`` with the mode of a plain file
    (0666 less the umask); returns the open descriptor and the path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    os.fchmod(fd, _umask_mode(0o666))
    return fd, Path(tmp)


def temp_dir(directory: str | os.PathLike, prefix: str) -> Path:
    """``mkdtemp(dir=directory, prefix=prefix, suffix=".tmp")`` with the mode of a plain
    directory (0777 less the umask)."""
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=prefix, suffix=".tmp"))
    tmp.chmod(_umask_mode(0o777))
    return tmp


def umask_modes(directory: str | os.PathLike) -> None:
    """Give ``directory`` and everything under it the modes a plain ``open``/``mkdir`` would have
    given (some writers, safetensors among them, create their files private, 0600)."""
    file_mode, dir_mode = _umask_mode(0o666), _umask_mode(0o777)
    for root, _, files in os.walk(directory):
        os.chmod(root, dir_mode)
        for name in files:
            os.chmod(os.path.join(root, name), file_mode)


def _umask_mode(mode: int) -> int:
    """``mode`` less the process's umask (read from /proc where it can be, without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return mode & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mode & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so that readers see either the old file or the complete new one."""
    path = Path(path)
    fd, tmp = temp_file(path.parent, f".{path.name}.")
    try:
        with naming_full_disk(f"the disk is full (writing {path}): free space and run again"), \
                os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) is ``ENOSPC`` or ``EDQUOT``, as an
    ``OSError`` or as a message that names the errno's text."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(os.strerror(code) in str(error) for code in (errno.ENOSPC, errno.EDQUOT)):
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def naming_full_disk(advice: str = DISK_FULL) -> Iterator[None]:
    """Turn a full disk inside the block into a ``UserError`` that says so (``advice``); any
    other exception passes unchanged (writers report a full disk as ``OSError``, torch's as
    ``RuntimeError``, safetensors' as ``SafetensorError``, each naming ENOSPC's text)."""
    try:
        yield
    except Exception as error:
        if is_disk_full(error):
            raise UserError(advice) from error
        raise


def fsync_tree(directory: str | os.PathLike) -> None:
    """Flush every file under ``directory``, and the directories themselves, to disk, so that a
    rename that publishes the directory cannot outlive its contents in a power loss."""
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(root)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (a rename into it, a file created in it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """``atomic_write_bytes`` of ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class ExclusiveLock:
    """An exclusive ``flock`` on ``path``, taken at once or refused with ``busy`` (which may name
    ``{pid}``, the holder's process id). The operating system drops the lock when the process
    ends, however it ends (even ``kill -9``): a dead holder never blocks anyone."""

    def __init__(self, path: str | os.PathLike, busy: str) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 64).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise FileExistsError(busy.replace("{pid}", holder)) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> ExclusiveLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
