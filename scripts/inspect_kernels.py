"""Compile the ``triton`` backend's kernels for sm_90 as the public op launches them, without a GPU,
and print one table of what their machine code is made of (see :mod:`swat.ops.triton_inspect`).

    python scripts/inspect_kernels.py            # every variant the model uses (a few minutes)
    python scripts/inspect_kernels.py --quick    # bf16, head_dim 64 and 128, G = 1 and 4
    python scripts/inspect_kernels.py --arch 80

Columns: registers per thread, stack bytes (local memory: spills), shared memory bytes, HGMMA
(warpgroup MMA) and HMMA (``mma.sync``) instructions, TMA instructions, and the SASS instructions
per score element of each inner loop (the forward's loops in code order; the heaviest bounds the
kernel). Exits non-zero if a bf16/fp16 kernel at head_dim 64 or 128 uses ``mma.sync`` or spills.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402

from swat.ops.triton_inspect import Report, Variant, compile_launch  # noqa: E402

HEADER = ("variant", "kernel", "tile", "regs", "stack", "smem", "HGMMA", "HMMA", "TMA", "instr/elem (loops)")


def quick_variants() -> list[Variant]:
    """The kernels the "Done when" of issue 20 judges: bf16, head_dim 64/128, G = 1/4, sigmoid,
    balanced ALiBi, window 512."""
    return [Variant(head_dim=d, group=g) for d in (64, 128) for g in (1, 4)]


def all_variants() -> list[Variant]:
    """Every dtype, head size and switch the model uses, each at least once."""
    return [
        *quick_variants(),
        *(Variant(dtype=torch.float16, head_dim=d) for d in (64, 128)),
        Variant(head_dim=256),
        *(Variant(dtype=torch.float32, head_dim=d) for d in (64, 128)),
        Variant(softmax=True), Variant(softmax=True, group=4, head_dim=64),
        Variant(slopes=False), Variant(segments=True, group=4),
        Variant(q_len=1, kv_len=32768, group=4), Variant(q_len=1, kv_len=32768, head_dim=64, softmax=True),
    ]


def must_hold(report: Report, variant: Variant) -> str | None:
    """Why ``report`` fails the rule (16-bit, head_dim 64/128: no mma.sync, no spills), else None."""
    if variant.dtype == torch.float32 or variant.head_dim not in (64, 128):
        return None
    if report.hmma:
        return f"{report.hmma} mma.sync (HMMA) instructions"
    if report.spills:
        return f"spills ({report.stack} bytes of stack, {report.spill_instructions} local loads/stores)"
    return None


def row(report: Report) -> tuple[str, ...]:
    loops = " / ".join(f"{x:g}" for x in report.loops)
    return (report.variant, report.kernel, report.tile, str(report.registers), str(report.stack),
            str(report.shared), str(report.hgmma), str(report.hmma), str(report.tma), loops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="bf16, head_dim 64/128, G = 1/4 only")
    parser.add_argument("--arch", type=int, default=90)
    args = parser.parse_args(argv)
    print(f"triton {triton.__version__}, torch {torch.__version__}, sm_{args.arch}\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER), flush=True)
    failures, start = [], time.perf_counter()
    for variant in quick_variants() if args.quick else all_variants():
        for report in compile_launch(variant, arch=args.arch):
            print("| " + " | ".join(row(report)) + " |", flush=True)
            if (why := must_hold(report, variant)) is not None:
                failures.append(f"{report.variant} {report.kernel}: {why}")
    print(f"\n{time.perf_counter() - start:.0f} s")
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
