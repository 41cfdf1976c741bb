"""Attention kernel benchmark: ``swat_attention`` (chunked, sigmoid, balanced ALiBi) against PyTorch.

Peers, all measured in the same run on the same inputs (batch 1, 8 heads, head_dim 64, window 512):

- ``swat``: ``swat_attention(backend="chunked", activation="sigmoid", slopes=alibi_slopes(8))``;
- ``fused``: the same through the fused C++ CPU kernel (``backend="fused"``, ``swat.ops.cpu_fused``;
  built, or loaded from its cache, before timing);
- ``SDPA causal``: ``F.scaled_dot_product_attention(is_causal=True)``, full causal softmax (what a
  Transformer++ pays), O(n^2);
- ``SDPA band``: SDPA with a boolean band mask ``0 <= i - j < 512`` (softmax sliding window the
  simple way); the mask makes it dense, O(n^2);
- ``Flex SW``: ``torch.nn.attention.flex_attention`` compiled with ``torch.compile``, softmax with
  a sliding-window ``mask_mod`` block mask (skips blocks outside the band). It has no CPU backward,
  so forward only; if it does not compile here the reason is printed and the rest goes on.

Each cell is the median of ``--repeats`` timed runs after one warm-up (repeats are interleaved
across peers, so load changes hit all of them alike). On a shared machine a run during which other
processes used the CPU is retried (within a budget; ``--no-quiet`` turns this off), and the
number of runs that never found a quiet slot is printed. Ratios are peer time / swat time (> 1: swat
is faster). Before running, each case's memory is estimated and cases above ``--max-gib`` are
skipped with the reason; a quadratic peer whose time, extrapolated from the previous length, would
exceed ``--max-seconds`` per run is skipped the same way.

It also prints swat's 8k -> 32k time growth, the machine (``describe_machine``), its fp32 and bf16
matmul GFLOP/s (square 2048 GEMMs through ``torch.mm`` and oneDNN, the faster of the two being the
"roof") and the fraction of the roof of their dtype that
the chunked and fused kernels reach on the useful band FLOPs: the matmuls of attention (forward
``QK^T``, ``PV``; backward also ``dV``, ``dP``, ``dQ``, ``dK``) over exactly the ``(i, j)`` pairs
in the band, ``2 * 2 * head_dim`` (forward) or ``6 * 2 * head_dim`` (forward+backward) FLOPs per
pair and head.

    .venv/bin/python benchmarks/bench_attention.py                  # 2k, 8k, 32k; fp32 and bf16
    .venv/bin/python benchmarks/bench_attention.py --quick          # 2k and 8k, fp32, 3 repeats
    .venv/bin/python benchmarks/bench_attention.py --lengths 8192 --dtypes fp32 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from swat.ops import AttentionSpec, alibi_slopes, swat_attention  # noqa: E402
from swat.ops.attention import pick_backend  # noqa: E402
from swat.ops.chunked import DEFAULT_BLOCK  # noqa: E402
from swat.ops.cpu_fused import available as fused_available  # noqa: E402
from swat.ops.device import describe_machine, fast_low_precision_matmul  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PEERS = ("swat", "fused", "sdpa_causal", "sdpa_band", "flex")
KERNELS = {"swat": "chunked", "fused": "fused"}  # swat's own backends
TITLES = {"swat": "swat (chunked, sigmoid)", "fused": "swat (fused, sigmoid)", "sdpa_causal": "SDPA causal",
          "sdpa_band": "SDPA band", "flex": "Flex SW (compiled)"}
GIB = 2 ** 30
DEFAULT_THREADS = torch.get_num_threads()  # the machine's default (or OMP_NUM_THREADS)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="2048,8192,32768", help="comma separated sequence lengths")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma separated, of: fp32, bf16")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median reported)")
    p.add_argument("--quick", action="store_true", help="2k and 8k, fp32, 3 repeats (unless given)")
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", default=f"{DEFAULT_THREADS},1",
                   help="comma separated thread counts, one table each (default: the machine's default, then 1)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma separated, of: {', '.join(PEERS)}")
    p.add_argument("--roof-size", type=int, default=2048, help="side of the square GEMMs of the matmul roofs")
    p.add_argument("--max-gib", type=float, default=12.0, help="skip cases estimated to need more memory")
    p.add_argument("--no-quiet", dest="quiet", action="store_false",
                   help="do not retry runs during which other processes used the CPU")
    p.add_argument("--max-seconds", type=float, default=90.0,
                   help="skip a quadratic peer whose run would take longer (extrapolated)")
    args = p.parse_args(argv)
    if args.quick:
        given = set(a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:]))
        if "--lengths" not in given:
            args.lengths = "2048,8192"
        if "--dtypes" not in given:
            args.dtypes = "fp32"
        if "--repeats" not in given:
            args.repeats = 3
    args.lengths = [int(x) for x in args.lengths.split(",")]
    args.dtypes = args.dtypes.split(",")
    args.peers = args.peers.split(",")
    args.threads = list(dict.fromkeys(int(x) for x in args.threads.split(",")))
    for name in args.dtypes:
        if name not in DTYPES:
            p.error(f"unknown dtype {name!r}: use {', '.join(DTYPES)}")
    for name in args.peers:
        if name not in PEERS:
            p.error(f"unknown peer {name!r}: use {', '.join(PEERS)}")
    return args


# --- what to run ---------------------------------------------------------------------------------

def band_pairs(n: int, w: int) -> int:
    """Number of (i, j) pairs with 0 <= i - j < w in a causal sequence of length n."""
    full = min(n, w)
    return full * (full + 1) // 2 + max(0, n - w) * w


def memory_estimate(peer: str, n: int, args, dtype: torch.dtype, backward: bool) -> int:
    """Rough peak bytes of one run (inputs, outputs, gradients and the largest temporaries)."""
    b, h, d, w = args.batch, args.heads, args.head_dim, args.window
    elem = torch.tensor([], dtype=dtype).element_size()
    io = b * n * h * d * elem * (8 if backward else 4)  # q, k, v, out (+ grads, grad_out)
    if peer in KERNELS:  # fp32 tiles of block x (block + w - 1), a few alive at a time
        return io * (2 if elem < 4 else 1) + 6 * b * h * DEFAULT_BLOCK * (DEFAULT_BLOCK + w) * 4
    if peer == "flex":
        return io + (n // 128 + 1) ** 2 * 16
    mask = n * n * (1 + elem) if peer == "sdpa_band" else 0  # bool mask, converted to an additive one
    q = torch.empty(b, h, 1, d, dtype=dtype)
    try:  # which SDPA kernel would run: the math fallback materialises b x h x n x n weights
        choice = torch._fused_sdp_choice(q, q, q, None, 0.0, peer == "sdpa_causal")
    except Exception:  # noqa: BLE001 (private API; assume the worst)
        choice = 0
    dense = b * h * n * n * 4 * (5 if backward else 3) if choice == 0 else 0
    return io + mask + dense


def make_inputs(n: int, args, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, n, args.heads, args.head_dim)
    q, k, v, go = (torch.randn(shape, generator=gen).to(dtype) for _ in range(4))
    return q, k, v, go


def build_runner(peer: str, n: int, args, dtype: torch.dtype, tensors) -> Callable[[bool], None] | str:
    """A function ``run(backward)`` for one peer, or a string saying why it cannot run."""
    q, k, v, go = tensors
    w = args.window
    if peer in KERNELS:
        slopes = alibi_slopes(args.heads, "balanced")
        inputs = [x.clone().requires_grad_() for x in (q, k, v)]

        def fn(q, k, v):
            return swat_attention(q, k, v, window=w, slopes=slopes, activation="sigmoid", backend=KERNELS[peer])
        grad_out = go
    else:
        inputs = [x.transpose(1, 2).contiguous().requires_grad_(peer != "flex") for x in (q, k, v)]
        grad_out = go.transpose(1, 2).contiguous()
        if peer == "sdpa_causal":
            def fn(q, k, v):
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif peer == "sdpa_band":
            i = torch.arange(n)
            band = (i[:, None] - i[None, :] >= 0) & (i[:, None] - i[None, :] < w)

            def fn(q, k, v):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=band)
        else:
            fn = flex_function(n, w)
            if isinstance(fn, str):
                return fn

    def run(backward: bool) -> None:
        if backward:
            out = fn(*inputs)
            torch.autograd.grad(out, inputs, grad_out)
        else:
            with torch.no_grad():
                fn(*inputs)
    return run


_FLEX_COMPILED = None


def flex_function(n: int, w: int):
    """Compiled FlexAttention with a sliding-window block mask, or why it is unavailable."""
    global _FLEX_COMPILED
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        def sliding_window(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx < w)

        block_mask = create_block_mask(sliding_window, B=None, H=None, Q_LEN=n, KV_LEN=n, device="cpu")
        if _FLEX_COMPILED is None:
            _FLEX_COMPILED = torch.compile(flex_attention, dynamic=False)
        compiled = _FLEX_COMPILED
    except Exception as e:  # noqa: BLE001
        return f"FlexAttention unavailable: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return lambda q, k, v: compiled(q, k, v, block_mask=block_mask)


# --- measuring -----------------------------------------------------------------------------------

def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used (user, nice, system, irq, softirq, steal), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class Timer:
    """Wall time of one run. With ``quiet`` (the default on Linux), a run during which other
    processes used more than 5% of the machine is repeated, up to ``tries`` times or as long as the
    retries cost less than ``budget`` seconds; runs that never got a quiet slot are counted as
    noisy and reported."""

    def __init__(self, quiet: bool, tries: int = 20, budget: float = 120.0):
        self.quiet = quiet and _busy_cpu_seconds() is not None
        self.tries, self.budget = tries, budget
        self.samples = self.noisy = 0

    def __call__(self, run: Callable[[bool], None], backward: bool) -> float:
        spent = 0.0
        for attempt in range(self.tries):
            busy0, own0, t0 = _busy_cpu_seconds(), sum(os.times()[:2]), time.perf_counter()
            run(backward)
            elapsed = time.perf_counter() - t0
            if not self.quiet:
                break
            others = (_busy_cpu_seconds() - busy0) - (sum(os.times()[:2]) - own0)
            if others <= 0.05 * elapsed * os.cpu_count() + 0.02:
                break
            spent += elapsed
            if attempt + 1 == self.tries or spent + elapsed > self.budget:
                self.noisy += 1
                break
            time.sleep(min(2.0, elapsed))
        self.samples += 1
        return elapsed


def matmul_gflops(timer: Timer, dtype: torch.dtype = torch.float32, repeats: int = 7,
                  size: int = 2048) -> dict[str, float]:
    """GFLOP/s of a square GEMM through ``torch.mm`` and, where PyTorch has oneDNN, through oneDNN's
    linear (``mkldnn_linear``): on some CPUs one is twice the other (MKL takes its AVX2 path on AMD's,
    in fp32), so the roof of a dtype is the faster of the two."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    gemms = {"torch.mm": lambda backward: a @ b}
    if torch.backends.mkldnn.is_available():
        a_dnn, b_dnn = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
        gemms["oneDNN"] = lambda backward: torch._C._nn.mkldnn_linear(a_dnn, b_dnn, None)
    speeds = {}
    for name, gemm in gemms.items():
        for _ in range(2):
            gemm(False)
        times = [timer(gemm, False) for _ in range(repeats)]
        speeds[name] = 2 * size ** 3 / statistics.median(times) / 1e9
    return speeds


def print_roof_fraction(results, dname: str, n: int, peer: str, backward: bool, roof: float, args) -> None:
    """One line: the useful band GFLOP/s of a swat kernel and its fraction of the dtype's matmul roof."""
    t = results.get((dname, n, peer, backward))
    if not t:
        return
    matmuls = 6 if backward else 2
    flops = matmuls * 2 * args.head_dim * band_pairs(n, args.window) * args.heads * args.batch
    achieved = flops / t / 1e9
    print(f"{TITLES[peer]} {dname} {'fwd+bwd' if backward else 'fwd'} at {n}: {flops / 1e9:.1f} GFLOP useful "
          f"band work in {t:.3f} s = {achieved:.0f} GFLOP/s = {achieved / roof:.0%} of the {dname} roof "
          f"({roof:.0f} GFLOP/s)")


def fmt_ms(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1e3:,.0f}" if t >= 0.01 else f"{t * 1e3:.3g}"


def measure(args, timed: Timer, warmup: Timer):
    """Every cell of one run at the current thread count: ``(results, notes, roofs)``."""
    roofs = {name: matmul_gflops(timed, DTYPES[name], repeats=max(3, args.repeats), size=args.roof_size)
             for name in args.dtypes}  # dtype -> {GEMM: GFLOP/s}
    results: dict[tuple, float | None] = {}
    notes: list[str] = []
    last_time: dict[tuple, tuple[int, float]] = {}  # (peer, dtype, backward) -> (n, seconds)
    for dname in args.dtypes:
        dtype = DTYPES[dname]
        for n in args.lengths:
            tensors = make_inputs(n, args, dtype)
            runners, cells = {}, []
            for peer in args.peers:
                passes = (False,) if peer == "flex" else (False, True)
                for backward in passes:
                    label = f"{TITLES[peer]} {'fwd+bwd' if backward else 'fwd'} {n} {dname}"
                    need = memory_estimate(peer, n, args, dtype, backward)
                    if need > args.max_gib * GIB:
                        notes.append(f"skipped {label}: needs ~{need / GIB:.1f} GiB > {args.max_gib} GiB")
                        continue
                    prev = last_time.get((peer, dname, backward))
                    if prev is not None and peer not in KERNELS:
                        predicted = prev[1] * (n / prev[0]) ** (1 if peer == "flex" else 2)
                        if predicted > args.max_seconds:
                            notes.append(f"skipped {label}: ~{predicted:.0f} s per run extrapolated from "
                                         f"{prev[0]} > --max-seconds {args.max_seconds:g}")
                            continue
                    if peer not in runners:
                        runners[peer] = build_runner(peer, n, args, dtype, tensors)
                    if isinstance(runners[peer], str):
                        if backward is False:
                            notes.append(f"{label}: {runners[peer]}")
                        continue
                    try:
                        warm = warmup(runners[peer], backward)  # warm-up (compiles Flex)
                        if peer == "flex":
                            notes.append(f"Flex {dname} {n}: first call (compile + run) {warm:.1f} s")
                            warm = warmup(runners[peer], backward)
                    except Exception as e:  # noqa: BLE001
                        notes.append(f"{label} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                        runners[peer] = f"failed: {type(e).__name__}"
                        continue
                    last_time[(peer, dname, backward)] = (n, warm)
                    cells.append((peer, backward, warm))
            samples = {(peer, backward): [] for peer, backward, _ in cells}
            for _ in range(args.repeats):  # interleaved across peers
                for peer, backward, warm in cells:
                    got = samples[(peer, backward)]
                    if warm * len(got) > args.max_seconds * 2 and got:
                        continue  # slow peer: fewer repeats
                    got.append(timed(runners[peer], backward))
            for (peer, backward), times in samples.items():
                results[(dname, n, peer, backward)] = statistics.median(times)
                last_time[(peer, dname, backward)] = (n, statistics.median(times))
                if len(times) < args.repeats:
                    notes.append(f"{TITLES[peer]} {'fwd+bwd' if backward else 'fwd'} {n} {dname}: "
                                 f"{len(times)} repeats (slow)")
            print(f"# measured {dname} {n} at {torch.get_num_threads()} threads", file=sys.stderr, flush=True)
    return results, notes, roofs


def print_table(results, args) -> None:
    print("Times in ms (median); in brackets peer time / swat (chunked) time (> 1: chunked faster).")
    print()
    header = ["seq", "dtype", "pass"] + [TITLES[p] for p in args.peers]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for dname in args.dtypes:
        for n in args.lengths:
            for backward in (False, True):
                ours = results.get((dname, n, "swat", backward))
                row = [f"{n}", dname, "fwd+bwd" if backward else "fwd"]
                for peer in args.peers:
                    t = results.get((dname, n, peer, backward))
                    if peer == "swat" or t is None or ours is None:
                        row.append(fmt_ms(t) if not (peer == "flex" and backward) else "n/a")
                    else:
                        row.append(f"{fmt_ms(t)} ({t / ours:.2f}x)")
                print("| " + " | ".join(row) + " |")


def print_auto_check(results, args) -> None:
    """Per dtype, length and pass: the faster of swat's CPU kernels here against what ``auto`` picks
    for these inputs (the rule in swat/ops/attention.py; it should name the faster one)."""
    if not all(peer in args.peers for peer in KERNELS):
        return
    threads = torch.get_num_threads()
    for dname in args.dtypes:
        for n in args.lengths:
            for backward in (False, True):
                times = {peer: results.get((dname, n, peer, backward)) for peer in KERNELS}
                if not all(times.values()):
                    continue
                fastest = min(times, key=times.get)
                q = torch.empty(1, n, args.heads, args.head_dim, dtype=DTYPES[dname], requires_grad=backward)
                with torch.set_grad_enabled(backward):
                    picked = pick_backend(q, q, AttentionSpec(window=args.window, slopes=None, sigmoid_bias=0.0,
                                                              activation="sigmoid", scale=1.0))
                verdict = "agrees" if picked == KERNELS[fastest] else "DISAGREES"
                print(f"auto at {threads} threads, {dname} {n} {'fwd+bwd' if backward else 'fwd'}: fastest "
                      f"{KERNELS[fastest]} (chunked / fused = {times['swat'] / times['fused']:.2f}); auto picks "
                      f"{picked}: {verdict}")


def report(results, notes, roofs, args, timed: Timer) -> None:
    threads = torch.get_num_threads()
    default = " (the machine's default)" if threads == DEFAULT_THREADS else ""
    print()
    print(f"## {threads} threads{default}")
    print()
    print(f"# matmul roofs ({args.roof_size}^3, the faster GEMM): " + ", ".join(
        f"{name} {max(speeds.values()):.0f} GFLOP/s (" + ", ".join(f"{gemm} {g:.0f}" for gemm, g in speeds.items()) + ")"
        for name, speeds in roofs.items()))
    print()
    print_table(results, args)
    print()
    for note in notes:
        print(f"- {note}")
    print()
    for dname in args.dtypes:
        for backward in (False, True):
            t8, t32 = (results.get((dname, n, "swat", backward)) for n in (8192, 32768))
            if t8 and t32:
                print(f"swat {dname} {'fwd+bwd' if backward else 'fwd'} 8k -> 32k: x{t32 / t8:.2f} "
                      f"(linear would be x4.00)")
    for dname in args.dtypes:
        for n in args.lengths:
            for peer in KERNELS:
                for backward in (False, True):
                    print_roof_fraction(results, dname, n, peer, backward, max(roofs[dname].values()), args)
    print_auto_check(results, args)
    if timed.quiet:
        print(f"{timed.samples - timed.noisy} of {timed.samples} timed runs were quiet (other processes used "
              f"< 5% of the CPUs); {timed.noisy} had no quiet slot within the retry budget")


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    load0 = os.getloadavg()
    print(f"# attention benchmark: batch {args.batch}, heads {args.heads}, head_dim {args.head_dim}, "
          f"window {args.window}, torch {torch.__version__}, threads {', '.join(map(str, args.threads))} "
          f"(default {DEFAULT_THREADS}), {os.cpu_count()} cpus, load average {load0[0]:.2f}")
    print(f"# swat chunked block {DEFAULT_BLOCK}; bf16 matmuls native on this CPU: "
          f"{fast_low_precision_matmul(torch.device('cpu'))} (if not, swat computes bf16 inputs in fp32)")
    print(f"# machine: {describe_machine()}")
    if "fused" in args.peers:
        print(f"# fused CPU kernel available: {fused_available()} (else the fused row is the chunked kernel)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        timed, warmup = Timer(args.quiet), Timer(False)
        report(*measure(args, timed, warmup), args, timed)
    torch.set_num_threads(DEFAULT_THREADS)
    load1 = os.getloadavg()
    print(f"load average at start {load0[0]:.2f}, at end {load1[0]:.2f} ({os.cpu_count()} cpus)")


if __name__ == "__main__":
    main()
