"""swat's C++ extensions (``swat.utils.extensions``): where a build is cached, and the build lock
that one process holds while it compiles, which a killed holder never leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from swat.ops import cpu_fused
from swat.utils import extensions


def test_build_directory_names_torch_and_source():
    cpu_fused.build()
    directory = cpu_fused.EXTENSION.build_directory()
    assert directory.parent == Path.home() / ".cache" / "swat" / "extensions"
    assert directory.name.startswith(f"{torch.__version__}-") and (directory / "build.ninja").exists()


# --- the build lock ----------------------------------------------------------------------------------

_SRC = str(Path(extensions.__file__).parents[2])
_HOLD_LOCK = """
import sys, time
from pathlib import Path
from swat.utils.extensions import build_lock
with build_lock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""
_TAKE_LOCK = """
import sys
from pathlib import Path
from swat.utils.extensions import build_lock
with build_lock(Path(sys.argv[1])):
    print("got it", flush=True)
"""


def _python(code: str, *args: str, **options) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": _SRC}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **options)


def test_build_lock_is_freed_when_its_holder_is_killed(tmp_path):
    """A process killed (kill -9) while it holds the build lock leaves nothing that blocks the next
    one; while the holder lives, a second process waits and says what for."""
    holder = _python(_HOLD_LOCK, str(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "holding"
        waiter = _python(_TAKE_LOCK, str(tmp_path))
        notice = waiter.stderr.readline()  # the waiter says what it waits for, then blocks
        assert "waiting for another process compiling" in notice and str(tmp_path / "build.lock") in notice
        assert waiter.poll() is None
        os.kill(holder.pid, signal.SIGKILL)
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0 and out.strip() == "got it", err
    finally:
        holder.kill()
        holder.wait()


def test_stale_torch_lock_does_not_block_loading():
    """torch's own lock file, left behind by a compile that was killed, does not block loading the
    built library (which does not go through torch's lock)."""
    cpu_fused.build()
    stale = cpu_fused.EXTENSION.build_directory() / "lock"
    stale.touch()
    try:
        loader = _python("from swat.ops import cpu_fused; print(cpu_fused.available())")
        out, err = loader.communicate(timeout=120)
        assert out.strip() == "True", err
    finally:
        stale.unlink(missing_ok=True)
