"""Compile the Triton kernels for CUDA targets without a GPU: Triton's own compiler (TTIR, TTGIR,
LLVM, PTX) and the ``ptxas`` it ships, as a first GPU run would. The interpreter runs the kernels'
Python, not their compilation, so this catches what only the compiler rejects (types, shapes of
``tl.dot``, constexpr use, shared memory). Run as ``python -m tests.ops.compile_kernels [--quick]``
in a process without ``TRITON_INTERPRET``: sm_80 and sm_90, bf16 and float32 (``--quick``: sm_90,
bf16, what the test suite runs); prints one line per kernel, exits non-zero on a failure.
"""

from __future__ import annotations

import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import swat.ops.triton_kernels as kernels
from swat.ops.triton_attention import _block_d, _blocks

ARCHS = (80, 90)
FLOAT_ARGS = ("scale", "sigmoid_bias")
POINTERS = ("Q", "K", "V", "Out", "Lse", "Slopes", "Segments", "dO", "RowDot", "dK", "dV", "dQ")
POINTEE_TYPES = {"Lse": "fp32", "RowDot": "fp32", "Slopes": "fp32", "Segments": "i64"}


def _signature(fn, dtype: str, constexprs: dict, out_dtype: str | None = None) -> dict[str, str]:
    """Triton types of ``fn``'s arguments: pointers to ``dtype`` (or as in POINTEE_TYPES; ``Out``
    to ``out_dtype`` if given), int32 sizes and strides, float32 scalars."""
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in FLOAT_ARGS:
            signature[name] = "fp32"
        elif name in POINTERS:
            pointee = out_dtype if name == "Out" and out_dtype else POINTEE_TYPES.get(name, dtype)
            signature[name] = "*" + pointee
        else:
            signature[name] = "i32"
    return signature


DTYPES = ((torch.bfloat16, "bf16", "tf32", 128), (torch.float32, "fp32", "ieee", 64))


def cases(dtypes):
    """``(kernel, pointer dtype, constexprs, Out dtype)``: every kernel and switch at least once, in
    bf16 (tensor cores) and float32 (exact, ``ieee``; slow to compile), with the launcher's own
    tile sizes."""
    for torch_dtype, dtype, precision, head_dim in dtypes:
        forward = dict(zip(("BLOCK_M", "BLOCK_N"), _blocks(head_dim, torch_dtype, backward=False), strict=True))
        backward = dict(zip(("BLOCK_M", "BLOCK_N"), _blocks(head_dim, torch_dtype, backward=True), strict=True))
        common = dict(UPCAST=False, INPUT_PRECISION=precision, BLOCK_D=_block_d(head_dim))
        everything = dict(SOFTMAX=True, HAS_SLOPES=True, HAS_SEGMENTS=True, **common)
        plain = dict(SOFTMAX=False, HAS_SLOPES=False, HAS_SEGMENTS=False, **common)
        yield kernels.attention_forward_kernel, dtype, dict(plain, PARTIAL=False, **forward), None
        yield kernels.attention_forward_kernel, dtype, dict(everything, PARTIAL=False, **forward), None
        yield kernels.attention_forward_kernel, dtype, dict(everything, PARTIAL=True, **forward), "fp32"
        yield kernels.attention_backward_dkdv_kernel, dtype, dict(everything, **backward), None
        yield kernels.attention_backward_dkdv_kernel, dtype, dict(plain, **backward), None
        yield kernels.attention_backward_dq_kernel, dtype, dict(everything, **backward), None


def main(argv: list[str] | None = None) -> int:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    failures = 0
    for arch in (90,) if quick else ARCHS:
        for fn, dtype, constexprs, out_dtype in cases(DTYPES[:1] if quick else DTYPES):
            source = ASTSource(fn=fn, signature=_signature(fn, dtype, constexprs, out_dtype), constexprs=constexprs)
            switches = ",".join(name for name in ("SOFTMAX", "HAS_SLOPES", "HAS_SEGMENTS", "PARTIAL")
                                if constexprs.get(name))
            label = f"sm_{arch} {fn.__name__} {dtype} [{switches}] {constexprs['BLOCK_M']}x{constexprs['BLOCK_N']}"
            try:
                compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                          options=dict(num_warps=4, num_stages=2))
            except Exception as error:  # report every kernel, then fail
                failures += 1
                print(f"FAILED {label}: {type(error).__name__}: {error}", flush=True)
                continue
            print(f"ok {label}: {compiled.metadata.shared} bytes of shared memory", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
