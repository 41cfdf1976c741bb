"""Compile the ``triton`` backend's kernels for sm_90 as the public op launches them, without a GPU,
and print one table of what their machine code is made of (see :mod:`swat.ops.triton_inspect`).

    python scripts/inspect_kernels.py            # every variant the model uses (a few minutes)
    python scripts/inspect_kernels.py --quick    # bf16, head_dim 64 and 128, G = 1 and 4
    python scripts/inspect_kernels.py --arch 80

Columns: registers per thread, stack bytes (local memory: spills), local loads/stores (of them,
inside the inner loops), shared memory bytes, HGMMA
(warpgroup MMA) and HMMA (``mma.sync``) instructions, TMA instructions, and the SASS instructions
per score element of each inner loop (the boundary blocks below the interior, those above it,
then the interior blocks; the heaviest bounds the kernel). Exits non-zero if a bf16/fp16 kernel at head_dim 64 or 128 uses ``mma.sync`` or spills.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402

from swat.ops.triton_attention import Tiles  # noqa: E402
from swat.ops.triton_inspect import Report, all_variants, compile_launch, must_hold, quick_variants  # noqa: E402

HEADER = ("variant", "kernel", "tile", "regs", "stack", "spill ld/st (in loops)", "smem", "HGMMA", "HMMA", "TMA",
          "instr/elem (boundary below / above / interior)")


def parse_tiles(text: str) -> tuple[str, Tiles]:
    """``"dkdv=32x64w4s2"`` as ``("dkdv", Tiles(32, 64, 4, 2))``."""
    kernel, _, shape = text.partition("=")
    found = re.fullmatch(r"(\d+)x(\d+)w(\d+)s(\d+)", shape)
    if kernel not in ("forward", "dkdv", "dq") or not found:
        raise SystemExit(f"--tiles {text!r}: write KERNEL=MxNwWsS, e.g. dkdv=32x64w4s2")
    return kernel, Tiles(*map(int, found.groups()))


def row(report: Report) -> tuple[str, ...]:
    loops = " / ".join(f"{x:g}" for x in report.loops)
    return (report.variant, report.kernel, report.tile, str(report.registers), str(report.stack),
            f"{report.spill_instructions} ({report.loop_spill_instructions})", str(report.shared), str(report.hgmma), str(report.hmma), str(report.tma), loops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="bf16, head_dim 64/128, G = 1/4 only")
    parser.add_argument("--head-dim", type=int, help="only the variants of this head size")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--tiles", action="append", default=[], metavar="KERNEL=MxNwWsS",
                        help="try other tiles, e.g. dkdv=32x64w4s2 (repeatable; kernels: forward, dkdv, dq)")
    args = parser.parse_args(argv)
    tiles = dict(parse_tiles(text) for text in args.tiles)
    print(f"triton {triton.__version__}, torch {torch.__version__}, sm_{args.arch}\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER), flush=True)
    failures, start = [], time.perf_counter()
    variants = quick_variants() if args.quick else all_variants()
    for variant in [v for v in variants if args.head_dim in (None, v.head_dim)]:
        for report in compile_launch(variant, arch=args.arch, tiles=tiles):
            print("| " + " | ".join(row(report)) + " |", flush=True)
            if (why := must_hold(report, variant)) is not None:
                failures.append(f"{report.variant} {report.kernel}: {why}")
    print(f"\n{time.perf_counter() - start:.0f} s")
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
