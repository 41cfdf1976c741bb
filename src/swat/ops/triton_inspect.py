"""The ``triton`` backend's kernels compiled for a CUDA target without a GPU, and read back from
their machine code (used by ``scripts/inspect_kernels.py`` and ``tests/ops/compile_kernels.py``).

:func:`compile_launch` runs the backend's own launcher (:mod:`swat.ops.triton_attention`) on
``meta`` tensors with a stand-in CUDA driver that names the target: Triton's JIT then binds and
specialises the arguments exactly as a launch on that GPU would (16-byte aligned pointers, strides
of 1 and multiples of 16 as compile-time facts, the launcher's tiles and warps) and compiles, but
launches nothing. :func:`inspect` reads the cubin with the ``cuobjdump`` and ``nvdisasm`` that ship
with Triton: registers, stack, shared memory, warpgroup (``HGMMA``) and ``mma.sync`` (``HMMA``)
matrix instructions, TMA, spills, and the SASS instructions of each inner loop per score element
(the loop's instructions divided by the ``BLOCK_M * BLOCK_N / (32 * num_warps)`` elements one
thread handles per iteration; the forward and both backward kernels have two: the masked boundary
blocks, then the interior ones).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from swat.ops import alibi_slopes
from swat.ops import triton_attention as launcher
from swat.ops.spec import AttentionSpec

KERNELS = ("attention_forward_kernel", "attention_backward_dkdv_kernel", "attention_backward_dq_kernel")


class _TargetDriver:
    """The few calls Triton's JIT makes on its driver before compiling: a CUDA device of one
    architecture, stream 0. Nothing can be launched through it."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    def get_current_target(self):
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_active_torch_device(self) -> torch.device:
        return torch.device("meta")

    def is_active(self) -> bool:
        return True


@contextlib.contextmanager
def _compiling_only(arch: int) -> Iterator[list]:
    """Inside: the backend's kernels compile for ``sm_{arch}`` instead of launching; yields the list
    that collects ``(kernel name, compiled kernel, launch keyword arguments)``."""
    from triton.runtime.driver import driver

    import swat.ops.triton_kernels as kernels

    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("compiling for a GPU needs a process without TRITON_INTERPRET")
    compiled = []
    originals = {name: getattr(kernels, name).run for name in KERNELS}

    def capture(name, run):
        def warmup(*args, **kwargs):
            kwargs["warmup"] = True
            kernel = run(*args, **kwargs)
            compiled.append((name, kernel, kwargs))
            return kernel
        return warmup

    previous = driver._active  # None until a real driver was asked for (there is none without a GPU)
    driver.set_active(_TargetDriver(arch))
    try:
        for name, run in originals.items():
            getattr(kernels, name).run = capture(name, run)
        yield compiled
    finally:
        for name, run in originals.items():
            getattr(kernels, name).run = run
        driver.set_active(previous)


@dataclass(frozen=True)
class Variant:
    """One call of the public op: what it specialises the kernels on. ``q_len`` is the number of
    query positions (1 with ``kv_len`` keys: a decoding step)."""

    dtype: torch.dtype = torch.bfloat16
    head_dim: int = 128
    group: int = 1
    softmax: bool = False
    slopes: bool = True
    segments: bool = False
    q_len: int = 8192
    kv_len: int = 8192
    heads: int = 16
    window: int = 512

    @property
    def decode(self) -> bool:
        return self.q_len == 1

    def label(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.").replace("bfloat", "bf").replace("float", "fp")
        flags = ["softmax" if self.softmax else "sigmoid"]
        flags += ["slopes"] if self.slopes else []
        flags += ["segments"] if self.segments else []
        flags += ["decode"] if self.decode else []
        return f"{dtype} d{self.head_dim} G{self.group} {'+'.join(flags)}"


@dataclass
class Report:
    """What one compiled kernel is made of (``loops``: SASS instructions per element of each inner
    loop, in code order)."""

    variant: str
    kernel: str
    tile: str
    registers: int
    stack: int
    shared: int
    hgmma: int
    hmma: int
    tma: int
    spill_instructions: int
    loop_spill_instructions: int
    loops: list[float] = field(default_factory=list)

    @property
    def spills(self) -> bool:
        return self.stack > 0 or self.spill_instructions > 0


def _tools() -> tuple[Path, Path]:
    import triton

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return bin_dir / "cuobjdump", bin_dir / "nvdisasm"


def _resource_usage(cubin: Path, cuobjdump: Path) -> dict[str, int]:
    text = subprocess.run([cuobjdump, "-res-usage", cubin], capture_output=True, text=True, check=True).stdout
    return {key: int(value) for key, value in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", text)}


_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?);?\s*$")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_BRANCH = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")


def _sass(cubin: Path, nvdisasm: Path) -> list[tuple[int, str, str | None]]:
    """``(address, instruction, label at that address)`` of every instruction."""
    text = subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True, check=True).stdout
    rows, label = [], None
    for line in text.splitlines():
        if found := _LABEL.match(line.strip()):
            label = found.group(1)
        elif found := _INSTRUCTION.match(line):
            rows.append((int(found.group(1), 16), found.group(2), label))
            label = None
    return rows


def inner_loops(sass: list[tuple[int, str, str | None]]) -> list[tuple[int, int]]:
    """``(first, last)`` instruction indices of the innermost loops: a branch back to an earlier
    label closes a loop; one that contains another loop is not innermost, one under 32
    instructions (the closing ``BRA`` to itself, a slow-path retry) is no loop over tiles."""
    where = {label: index for index, (_, _, label) in enumerate(sass) if label}
    loops = []
    for index, (_, instruction, _) in enumerate(sass):
        found = _BRANCH.search(instruction)
        if found and where.get(found.group(1), index + 1) <= index:
            loops.append((where[found.group(1)], index))
    innermost = [(a, b) for a, b in loops if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    return [(a, b) for a, b in sorted(innermost) if b - a + 1 >= 32]


def inspect(name: str, kernel, launch: dict, variant: str) -> Report:
    """The :class:`Report` of one compiled kernel, launched with keyword arguments ``launch``."""
    cuobjdump, nvdisasm = _tools()
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        usage = _resource_usage(cubin, cuobjdump)
        sass = _sass(cubin, nvdisasm)
    opcodes = [instruction.split()[0] if not instruction.startswith("@") else instruction.split()[1]
               for _, instruction, _ in sass]
    count = lambda *prefixes: sum(op.startswith(prefixes) for op in opcodes)  # noqa: E731
    loops = inner_loops(sass)
    elements = launch["BLOCK_M"] * launch["BLOCK_N"] / (32 * kernel.metadata.num_warps)
    return Report(
        variant=variant, kernel=name.removeprefix("attention_").removesuffix("_kernel"),
        tile=f"{launch['BLOCK_M']}x{launch['BLOCK_N']} w{kernel.metadata.num_warps} s{kernel.metadata.num_stages}",
        registers=usage.get("REG", 0), stack=usage.get("STACK", 0) + usage.get("LOCAL", 0),
        shared=kernel.metadata.shared, hgmma=count("HGMMA"), hmma=count("HMMA"),
        tma=count("UTMALDG", "UTMASTG", "UBLKCP"), spill_instructions=count("STL", "LDL"),
        loop_spill_instructions=sum(op.startswith(("STL", "LDL")) for a, b in loops for op in opcodes[a:b + 1]),
        loops=[round((b - a + 1) / elements, 1) for a, b in loops],
    )


def _inputs(variant: Variant) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionSpec]:
    meta = dict(dtype=variant.dtype, device="meta")
    kv_heads = variant.heads // variant.group
    q = torch.empty(1, variant.q_len, variant.heads, variant.head_dim, **meta)
    k = torch.empty(1, variant.kv_len, kv_heads, variant.head_dim, **meta)
    v = torch.empty(1, variant.kv_len, kv_heads, variant.head_dim, **meta)
    spec = AttentionSpec(window=variant.window, slopes=alibi_slopes(variant.heads) if variant.slopes else None,
                         sigmoid_bias=-6.0, activation="softmax" if variant.softmax else "sigmoid",
                         scale=variant.head_dim ** -0.5,
                         segment_ids=torch.empty(1, variant.kv_len, dtype=torch.int64, device="meta")
                         if variant.segments else None)
    return q, k, v, spec


def quick_variants() -> list[Variant]:
    """The kernels the model trains with, as judged by docs/gpu-kernels.md: bf16, head_dim 64/128,
    G = 1/4, sigmoid, balanced ALiBi, window 512."""
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


def compile_launch(variant: Variant, arch: int = 90, backward: bool = True,
                   tiles: dict | None = None) -> list[Report]:
    """Compiles what the public op launches for ``variant`` on ``sm_{arch}`` (forward, and unless
    ``backward`` is false or the variant decodes, both backward kernels) and inspects each.
    ``tiles`` maps kernel names (``forward``, ``dkdv``, ``dq``) to a ``Tiles`` to try instead of
    the launcher's choice."""
    q, k, v, spec = _inputs(variant)
    tiles = {kernel: launcher._tiles(kernel, variant.head_dim, variant.dtype) for kernel in ("forward", "dkdv", "dq")
             } | (tiles or {})
    with _compiling_only(arch) as compiled:
        if variant.decode:
            launcher._forward(q, k, v, spec, tiles["forward"], keys_per_split=launcher.DECODE_KEYS_PER_SPLIT)
        else:
            out, lse = launcher._forward(q, k, v, spec, tiles["forward"], keys_per_split=None)
            if backward:
                launcher._backward(q, k, v, out, lse, torch.empty_like(out), spec, tiles["dkdv"], tiles["dq"])
    return [inspect(name, kernel, launch, variant.label()) for name, kernel, launch in compiled]
