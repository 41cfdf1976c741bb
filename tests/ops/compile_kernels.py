"""Compile the Triton kernels for CUDA targets without a GPU, exactly as the public op launches
them (:func:`swat.ops.triton_inspect.compile_launch`: the launcher's own tiles, warps and stages,
arguments specialised by Triton's JIT as on a GPU: 16-byte aligned pointers, unit strides and
multiples of 16, so loads are 16-byte async copies), through Triton's compiler and the ``ptxas``
it ships. The interpreter runs the kernels' Python, not their compilation, so this catches what
only the compiler rejects (types, ``tl.dot`` shapes, constexpr use, shared memory), and, read back
from the cubin, what would make them slow: for bf16/fp16 at head_dim 64 and 128 no ``mma.sync``
(every matrix product on Hopper's warpgroup MMA) and no spills.

Run as ``python -m tests.ops.compile_kernels [--quick]`` in a process without ``TRITON_INTERPRET``:
``--quick`` is sm_90 and what the test suite runs (the model's bf16 kernels at head_dim 64 and 128,
G = 1 and 4, an fp16 one, softmax with segments, a decoding step); without it, every variant of
``scripts/inspect_kernels.py`` on sm_80 and sm_90. Prints one line per kernel, exits non-zero on a
failure.
"""

from __future__ import annotations

import sys

import torch

from swat.ops.triton_inspect import Variant, all_variants, compile_launch, must_hold, quick_variants

ARCHS = (80, 90)


def ci_variants() -> list[Variant]:
    return [*quick_variants(), Variant(dtype=torch.float16, head_dim=128, group=4),
            Variant(head_dim=64, group=4, softmax=True, segments=True), Variant(q_len=1, kv_len=4096, group=4)]


def main(argv: list[str] | None = None) -> int:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    failures = 0
    for arch in (90,) if quick else ARCHS:
        for variant in ci_variants() if quick else all_variants():
            try:
                reports = compile_launch(variant, arch=arch)
            except Exception as error:  # report every variant, then fail
                failures += 1
                print(f"FAILED sm_{arch} {variant.label()}: {type(error).__name__}: {error}", flush=True)
                continue
            for report in reports:
                why = must_hold(report, variant) if arch == 90 else None
                failures += why is not None
                print(f"{'FAILED' if why else 'ok'} sm_{arch} {report.variant} {report.kernel} {report.tile}: "
                      f"{report.registers} registers, {report.stack} B stack, {report.shared} B shared, "
                      f"{report.hgmma} HGMMA, {report.hmma} HMMA" + (f": {why}" if why else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
