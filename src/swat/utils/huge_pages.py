"""Transparent huge pages for large CPU tensors: PyTorch's own switch, set by swat's commands.

PyTorch's CPU allocator takes memory from ``malloc``, and glibc serves every block over 32 MiB with
a fresh ``mmap`` that it returns on ``free``. A training step allocates and frees the same large
activations every step, so from about 16k tokens (hidden 512, float32) each step faults every page
of them in again, 4 KiB at a time: at 32k tokens a step of the benchmark model spent 28 s of
system time in page faults against 37 s of computing. With ``THP_MEM_ALLOC_ENABLE=1`` PyTorch asks
the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every allocation of 2 MiB and
more: 512 times fewer faults for the same memory, and no more memory held (docs/benchmarks.md
gives the measurements). PyTorch reads the variable once, at its first CPU allocation, so it has
to be set before a process creates its first tensor.
"""

from __future__ import annotations

import os

ENV = "THP_MEM_ALLOC_ENABLE"


def use_huge_pages() -> None:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless the environment already says (a user's ``0`` is kept).
    Call it before torch allocates anything (swat's command line does it before importing torch)."""
    os.environ.setdefault(ENV, "1")
