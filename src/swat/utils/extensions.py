"""swat's C++ extensions: compiled on first use, cached per torch version and source, loaded after.

A :class:`CompiledExtension` is one C++ file that registers its ops with ``TORCH_LIBRARY``. The
first :meth:`~CompiledExtension.load` compiles it with ``torch.utils.cpp_extension`` into
``~/.cache/swat/extensions/<torch version>-<hash of source and flags>`` and loads it; later ones
(in this process or any other) load the library from there. One process compiles at a time,
under :func:`build_lock`; a compiled library is loaded directly, without torch's own build lock
(a file that stays behind, and hangs every later load, when the process holding it is killed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

CACHE = Path.home() / ".cache" / "swat" / "extensions"
# Written last by the process that compiled an extension: a library without it is incomplete.
COMPLETE = "complete"


def build_failure(error: BaseException) -> str:
    """Why a build failed, in one line: the error's type and the last line of its message (a
    compiler's output ends with the reason), at most 160 characters of it."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1][:160] if lines else ''}"


@contextlib.contextmanager
def build_lock(directory: Path, what: str = "a C++ extension"):
    """An exclusive ``flock`` on ``directory/build.lock`` for as long as the block runs. The OS drops
    it when its holder exits, however it dies (kill -9 included), so no lock is ever left stale; a
    process that has to wait says for what, once."""
    fd = os.open(directory / "build.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"swat: waiting for another process compiling {what} in {directory} "
                  f"(it holds {directory / 'build.lock'})", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


@dataclass(frozen=True)
class CompiledExtension:
    """One C++ source compiled into a library of torch ops. ``what`` names it in messages."""

    source: Path
    what: str
    cflags: tuple[str, ...] = ("-O3",)
    ldflags: tuple[str, ...] = ()

    def build_directory(self) -> Path:
        """Where the library is cached: one folder per torch version, source text and flags."""
        flags = " ".join(self.cflags + self.ldflags).encode()
        digest = hashlib.sha256(self.source.read_bytes() + flags).hexdigest()[:16]
        return CACHE / f"{torch.__version__}-{digest}"

    def load(self) -> None:
        """Compiles the library (or finds it in the cache) and loads it into this process, which
        registers its ops. Raises if it cannot be built."""
        directory = self.build_directory()
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{self.source.stem}_{directory.name.rsplit('-', 1)[1]}"
        with build_lock(directory, self.what):
            if (directory / COMPLETE).is_file():
                torch.ops.load_library(str(directory / f"{name}.so"))
            else:
                self._compile(directory, name)

    def _compile(self, directory: Path, name: str) -> None:
        """Compiles and loads the library; the caller holds :func:`build_lock`."""
        from torch.utils.cpp_extension import load

        print(f"swat: compiling {self.what} into {directory} (once, up to a minute)", file=sys.stderr)
        (directory / "lock").unlink(missing_ok=True)  # torch's lock file, left by a killed compile: we hold ours
        load(name=name, sources=[str(self.source)], extra_cflags=list(self.cflags), extra_ldflags=list(self.ldflags),
             build_directory=str(directory), is_python_module=False, verbose=False)
        (directory / COMPLETE).touch()
