"""GPU attention benchmark: the ``triton`` backend of ``swat_attention`` against its peers, on CUDA.

All peers run in the same process on the same bf16 inputs (``[batch, n, heads, head_dim]``,
window ``w``), and every cell is the median of ``--repeats`` runs timed with CUDA events after
``--warmup`` runs:

- ``swat triton``: ``swat_attention(backend="triton")``, sigmoid, balanced ALiBi (retaining half
  bounded as in the model's default), ``b = -log(w)``;
- ``swat chunked``: the same math through the ``chunked`` backend (a Python loop of tiles; skipped
  above ``--chunked-max-len``);
- ``flex sigmoid``: FlexAttention (compiled) with a sliding-window block mask and
  ``score_mod = logsigmoid(s - m_h (i - j) + b)``. Softmax of those scores is
  ``sigmoid(s_ij) / Z_i`` with ``Z_i = sum_j sigmoid(s_ij)``, and FlexAttention returns
  ``log Z_i`` (``return_lse=True``), so ``out * exp(lse)`` is exactly the sigmoid attention;
- ``flash-attn SW``: flash-attn 2, softmax, ``window_size=(w - 1, 0)``, ``alibi_slopes`` (when
  ``flash_attn`` is importable);
- ``flex softmax SW``: FlexAttention (compiled), softmax with the sliding-window block mask;
- ``SDPA causal``: ``F.scaled_dot_product_attention(is_causal=True)``, full causal softmax (what a
  Transformer++ pays; O(n^2)).

Every row is printed (flushed) as soon as it is measured, so a run cut short by a time limit keeps
what it measured; the peers that compile nothing (``swat triton`` first, SDPA) run first, then the
decoding step and the sweep, the compiled FlexAttention peers last. ``--groups`` sets ``G`` query heads per kv head
(``heads / G`` kv heads; SDPA and FlexAttention take the GQA inputs with ``enable_gqa=True``);
each compiled peer compiles once per shape.

Columns: time (ms), ``ratio`` = peer time / ``swat triton`` time (> 1: ours is faster), TFLOP/s on
the useful band FLOPs (``2 * 2 * head_dim`` per (query, key) pair of the band and head forward,
``6 * 2 * head_dim`` forward+backward; SDPA causal computes more pairs than that, so its number is
an effective rate), and the max abs error against a float64 dense reference of the same math on
the first ``--error-len`` positions (same bf16 inputs). A peer that fails (not installed, does not
compile, out of memory) prints its reason and the table goes on.

``--decode`` adds the latency of one decoding step (one query per sequence, batch 1) at positions
``--decode-lengths``: ``swat triton`` against the rolling cache (``min(n, w)`` keys), SDPA against
a full cache of ``n`` keys. ``--sweep`` adds ``triton.testing.do_bench`` times of each kernel over a
few tiles (the launcher's choice first) at the longest length and the first group: the forward
alone, and the backward with one kernel's tiles varied.

``--model`` adds a training step (forward+backward, bf16 autocast) of a SWAT model (the
``triton`` backend through ``auto``) against Hugging Face Mistral (sliding window) and Llama (full
causal), both with ``attn_implementation="sdpa"``, at the same size, in tokens per second.

    python benchmarks/bench_attention_gpu.py                       # 8k, 32k; head_dim 64, 128; G = 1, 4
    python benchmarks/bench_attention_gpu.py --lengths 8192 --head-dims 64 --repeats 3 --decode --sweep
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from swat.ops import alibi_slopes, swat_attention  # noqa: E402
from swat.ops.alibi import bounded_retain_scale  # noqa: E402
from swat.ops.reference import reference_attention  # noqa: E402

PEERS = ("swat_triton", "sdpa_causal", "flex_softmax_sw", "flex_sigmoid", "flash_sw", "swat_chunked")
DEFAULT_PEERS = ("swat_triton", "sdpa_causal", "flex_softmax_sw", "flex_sigmoid")
COMPILED = ("flex_softmax_sw", "flex_sigmoid")  # torch.compile once per shape: timed last
TITLES = {"swat_triton": "swat triton (sigmoid)", "swat_chunked": "swat chunked (sigmoid)",
          "flex_sigmoid": "flex sigmoid", "flash_sw": "flash-attn SW (softmax)",
          "flex_softmax_sw": "flex softmax SW", "sdpa_causal": "SDPA causal (softmax)"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="8192,32768", help="comma separated sequence lengths")
    p.add_argument("--head-dims", default="64,128", help="comma separated head sizes")
    p.add_argument("--groups", default="1,4", help="comma separated query heads per kv head (G)")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--peers", default=",".join(DEFAULT_PEERS), help=f"comma separated subset of {','.join(PEERS)}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--chunked-max-len", type=int, default=32768, help="the chunked backend is skipped above this")
    p.add_argument("--error-len", type=int, default=2048, help="positions of the float64 error check")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--decode", action="store_true", help="also time a decoding step")
    p.add_argument("--decode-lengths", default="1024,32768,131072", help="positions of the decoding step")
    p.add_argument("--sweep", action="store_true", help="also time each kernel over a few tiles")
    p.add_argument("--model", action="store_true", help="also time a model training step (tok/s)")
    p.add_argument("--model-layers", type=int, default=12)
    p.add_argument("--model-hidden", type=int, default=1024)
    p.add_argument("--model-seq", type=int, default=4096)
    p.add_argument("--model-batch", type=int, default=4)
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",")]
    args.head_dims = [int(x) for x in args.head_dims.split(",")]
    args.groups = [int(x) for x in args.groups.split(",")]
    args.decode_lengths = [int(x) for x in args.decode_lengths.split(",")]
    args.peers = [x for x in args.peers.split(",") if x]
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown:
        p.error(f"unknown peers {unknown}; choose from {', '.join(PEERS)}")
    return args


# --- the peers: each maps [batch, n, heads, d] bf16 q, k, v to the output in the same layout --------

class Problem:
    """The math every peer computes, and the keyword arguments of the float64 reference."""

    def __init__(self, heads: int, window: int, device: torch.device):
        self.window = window
        # balanced slopes with the retaining half bounded as the model's default (docs/spec.md section 2)
        self.slopes = alibi_slopes(heads, retain_scale=bounded_retain_scale(heads, window)).to(device)
        self.sigmoid_bias = -math.log(window)

    def reference_kwargs(self, peer: str) -> dict:
        if peer in ("swat_triton", "swat_chunked", "flex_sigmoid"):
            return dict(window=self.window, slopes=self.slopes, sigmoid_bias=self.sigmoid_bias, activation="sigmoid")
        if peer == "flash_sw":
            return dict(window=self.window, slopes=self.slopes, sigmoid_bias=0.0, activation="softmax")
        if peer == "flex_softmax_sw":
            return dict(window=self.window, slopes=None, sigmoid_bias=0.0, activation="softmax")
        return dict(window=None, slopes=None, sigmoid_bias=0.0, activation="softmax")


def _swat(problem: Problem, backend: str) -> Callable:
    def run(q, k, v):
        return swat_attention(q, k, v, window=problem.window, slopes=problem.slopes,
                              sigmoid_bias=problem.sigmoid_bias, backend=backend)
    return run


def _sdpa_causal(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          is_causal=True, enable_gqa=k.shape[2] != q.shape[2]).transpose(1, 2)


def _flash(problem: Problem) -> Callable:
    from flash_attn import flash_attn_func

    def run(q, k, v):
        return flash_attn_func(q, k, v, causal=True, window_size=(problem.window - 1, 0),
                               alibi_slopes=problem.slopes.float())
    return run


_FLEX_MASKS: dict[tuple[int, int], object] = {}


def _flex(problem: Problem, sigmoid: bool) -> Callable:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    compiled = torch.compile(flex_attention, dynamic=False)
    window, slopes, bias = problem.window, problem.slopes.float(), problem.sigmoid_bias

    def band(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)

    def sigmoid_scores(score, b, h, q_idx, kv_idx):
        return F.logsigmoid(score - slopes[h] * (q_idx - kv_idx) + bias)

    def run(q, k, v):
        n = q.shape[1]
        if (n, window) not in _FLEX_MASKS:
            # compiled: the mask is evaluated block by block, never as an n x n tensor
            _FLEX_MASKS[(n, window)] = create_block_mask(band, None, None, n, n, device=q.device, _compile=True)
        mask = _FLEX_MASKS[(n, window)]
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        gqa = k.shape[2] != q.shape[2]
        if not sigmoid:
            return compiled(qt, kt, vt, block_mask=mask, enable_gqa=gqa).transpose(1, 2)
        out, lse = compiled(qt, kt, vt, score_mod=sigmoid_scores, block_mask=mask, return_lse=True, enable_gqa=gqa)
        return (out * lse.exp().unsqueeze(-1).to(out.dtype)).transpose(1, 2)
    return run


def make_peer(name: str, problem: Problem) -> Callable:
    return {
        "swat_triton": lambda: _swat(problem, "triton"),
        "swat_chunked": lambda: _swat(problem, "chunked"),
        "flex_sigmoid": lambda: _flex(problem, sigmoid=True),
        "flash_sw": lambda: _flash(problem),
        "flex_softmax_sw": lambda: _flex(problem, sigmoid=False),
        "sdpa_causal": lambda: _sdpa_causal,
    }[name]()


# --- timing ---------------------------------------------------------------------------------------------

def median_ms(step: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median of ``repeats`` CUDA-event timings of ``step`` after ``warmup`` untimed runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def band_pairs(n: int, window: int) -> int:
    """(i, j) pairs with ``0 <= i - j < w`` among ``n`` positions."""
    w = min(window, n)
    return n * w - w * (w - 1) // 2


def inputs(batch, n, heads, head_dim, group=1, seed=0, grad=False, kv_len=None):
    """bf16 ``q`` ``[batch, n, heads, head_dim]`` and ``k``, ``v`` with ``heads / group`` kv heads."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    shapes = [(batch, n, heads, head_dim)] + [(batch, kv_len or n, heads // group, head_dim)] * 2
    return [torch.randn(*shape, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_(grad)
            for shape in shapes]


def peer_error(peer: Callable, problem: Problem, name: str, heads: int, head_dim: int, group: int,
               length: int) -> float:
    """Max abs error of ``peer``'s output against the float64 dense reference on ``length`` positions."""
    q, k, v = inputs(1, length, heads, head_dim, group, seed=1)
    with torch.no_grad():
        got = peer(q, k, v).double()
        want = reference_attention(q.double(), k.double(), v.double(), scale=head_dim ** -0.5,
                                   **problem.reference_kwargs(name))
    return (got - want).abs().max().item()


def time_peer(peer: Callable, args, n: int, head_dim: int, group: int, backward: bool) -> float:
    q, k, v = inputs(args.batch, n, args.heads, head_dim, group, grad=backward)
    if not backward:
        def step():
            with torch.no_grad():
                peer(q, k, v)
    else:
        grad_out = torch.randn_like(q)

        def step():
            for x in (q, k, v):
                x.grad = None
            peer(q, k, v).backward(grad_out)
    return median_ms(step, args.warmup, args.repeats)


def attention_table(args, peers: list[str], swat_ms: dict, header: bool = True) -> list[str]:
    """The rows of ``peers`` at every head size, group, length and mode; ``swat_ms`` holds (and
    gets) ``swat triton``'s times, which the ratios divide by."""
    problem = Problem(args.heads, args.window, torch.device("cuda"))
    modes = ["fwd"] + ([] if args.no_backward else ["fwd+bwd"])
    lines = [f"# batch {args.batch}, {args.heads} heads, window {args.window}, bf16; median of {args.repeats} "
             f"after {args.warmup} warm-up; error: max abs vs float64 reference on {args.error_len} positions",
             "| head_dim | G | n | mode | peer | ms | ratio (peer / swat triton) | band TFLOP/s | error |",
             "|---|---|---|---|---|---|---|---|---|"] if header else []
    print("\n".join(lines), flush=True)
    for head_dim in args.head_dims:
        for group in args.groups:
            lines += _shape_rows(args, problem, peers, head_dim, group, modes, swat_ms)
    return lines


def _shape_rows(args, problem: Problem, names: list[str], head_dim: int, group: int, modes: list[str],
                swat_ms: dict) -> list[str]:
    """The rows of one head size and group, each printed as it is measured."""
    lines, peers, errors = [], {}, {}
    for name in names:
        try:
            peers[name] = make_peer(name, problem)
            errors[name] = f"{peer_error(peers[name], problem, name, args.heads, head_dim, group, args.error_len):.2e}"
        except Exception as error:  # a missing or failing peer is reported, the others still run
            print(f"# {TITLES[name]}, head_dim {head_dim}, G {group}: unavailable ({type(error).__name__}: {error})",
                  flush=True)
            peers.pop(name, None)
    for n in args.lengths:
        for mode in modes:
            flops = (4 if mode == "fwd" else 12) * head_dim * band_pairs(n, args.window) * args.heads * args.batch
            for name, peer in peers.items():
                if name == "swat_chunked" and n > args.chunked_max_len:
                    continue
                try:
                    ms = time_peer(peer, args, n, head_dim, group, backward=mode == "fwd+bwd")
                except Exception as error:
                    print(f"# {TITLES[name]}, n {n}, {mode}: failed ({type(error).__name__}: {error})", flush=True)
                    continue
                finally:
                    torch.cuda.empty_cache()
                if name == "swat_triton":
                    swat_ms[head_dim, group, n, mode] = ms
                ours = swat_ms.get((head_dim, group, n, mode))
                ratio = f"{ms / ours:.2f}" if ours else "-"
                lines.append(f"| {head_dim} | {group} | {n} | {mode} | {TITLES[name]} | {ms:.3f} | {ratio} | "
                             f"{flops / ms / 1e9:.1f} | {errors[name]} |")
                print(lines[-1], flush=True)
    return lines


# --- decoding and the tile sweep ---------------------------------------------------------------------------

def decode_table(args) -> list[str]:
    """One decoding step (batch 1, one query): swat triton on the rolling cache, SDPA on a full cache."""
    problem = Problem(args.heads, args.window, torch.device("cuda"))
    swat = _swat(problem, "triton")
    lines = ["", f"# decoding step, batch 1, {args.heads} heads, window {args.window}, bf16; median of "
             f"{args.repeats} timings of 20 steps", "| head_dim | G | position n | peer | cached keys | ms / step |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for head_dim in args.head_dims:
        for group in args.groups:
            for n in args.decode_lengths:
                for name, run, keys in (("swat triton", swat, min(n, args.window)), ("SDPA (full cache)",
                                                                                        _sdpa_decode, n)):
                    q, k, v = inputs(1, 1, args.heads, head_dim, group, kv_len=keys)

                    def step(run=run, q=q, k=k, v=v):
                        with torch.no_grad():
                            for _ in range(20):
                                run(q, k, v)
                    try:
                        ms = median_ms(step, args.warmup, args.repeats) / 20
                        lines.append(f"| {head_dim} | {group} | {n} | {name} | {keys} | {ms:.4f} |")
                    except Exception as error:
                        lines.append(f"| {head_dim} | {group} | {n} | {name} | {keys} | failed: {type(error).__name__} |")
                    print(lines[-1], flush=True)
    return lines


def _sdpa_decode(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          enable_gqa=k.shape[2] != q.shape[2]).transpose(1, 2)


SWEEP = {  # (block_m, block_n, num_warps, num_stages) tried besides the launcher's choice
    "forward": [(128, 64, 8, 3), (64, 64, 4, 2), (128, 32, 8, 2)],
    "dkdv": [(64, 64, 4, 2), (32, 64, 4, 2), (32, 128, 8, 1)],
    "dq": [(64, 64, 4, 2), (64, 32, 4, 2), (64, 32, 4, 3)],
}


def sweep_table(args) -> list[str]:
    """``do_bench`` ms of each kernel over a few tiles, sigmoid with the model's slopes and bias."""
    n = max(args.lengths)
    lines = ["", f"# tile sweep: triton.testing.do_bench median ms, n {n}, {args.heads} heads, window {args.window}, "
             "bf16, sigmoid; backward rows time both backward kernels with one kernel's tiles varied",
             "| head_dim | G | kernel | tiles (m x n, warps, stages) | ms |", "|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for head_dim in args.head_dims:
        lines += _sweep_rows(args, head_dim, args.groups[0], n)
    return lines


def _sweep_rows(args, head_dim: int, group: int, n: int) -> list[str]:
    import triton

    from swat.ops import triton_attention as launcher
    from swat.ops.spec import AttentionSpec

    problem = Problem(args.heads, args.window, torch.device("cuda"))
    q, k, v = inputs(1, n, args.heads, head_dim, group)
    spec = AttentionSpec(window=args.window, slopes=problem.slopes, sigmoid_bias=problem.sigmoid_bias,
                         activation="sigmoid", scale=head_dim ** -0.5)
    chosen = {kernel: launcher._tiles(kernel, head_dim, q.dtype) for kernel in SWEEP}
    out, lse = launcher._forward(q, k, v, spec, chosen["forward"], None)
    grad = torch.randn_like(out)

    def forward(tiles):
        launcher._forward(q, k, v, spec, tiles, None)

    def backward(tiles_of):
        launcher._backward(q, k, v, out, lse, grad, spec, tiles_of["dkdv"], tiles_of["dq"])

    lines = []
    for kernel, options in SWEEP.items():
        others = [launcher.Tiles(*option) for option in options]
        tried = [chosen[kernel], *(tiles for tiles in others if tiles != chosen[kernel])]
        for tiles in tried:
            run = (functools.partial(forward, tiles) if kernel == "forward"
                   else functools.partial(backward, dict(chosen, **{kernel: tiles})))
            try:
                ms = f"{triton.testing.do_bench(run):.3f}"
            except Exception as error:  # a tile that does not compile or fit: reported, the sweep goes on
                ms = f"failed: {type(error).__name__}: {str(error)[:80]}"
            default = " (default)" if tiles == chosen[kernel] else ""
            lines.append(f"| {head_dim} | {group} | {kernel} | {tiles.block_m}x{tiles.block_n}, {tiles.num_warps}, "
                         f"{tiles.num_stages}{default} | {ms} |")
            print(lines[-1], flush=True)
    return lines


# --- a model training step -------------------------------------------------------------------------------

def _model_configs(args):
    from transformers import LlamaConfig, MistralConfig

    from swat import SWATConfig

    heads = args.heads
    shared = dict(vocab_size=32000, hidden_size=args.model_hidden, intermediate_size=int(2.75 * args.model_hidden),
                  num_hidden_layers=args.model_layers, num_attention_heads=heads, num_key_value_heads=heads,
                  max_position_embeddings=args.model_seq)
    return {
        "swat (triton, auto)": SWATConfig(sliding_window=args.window, **shared),
        "HF Mistral SW (SDPA)": MistralConfig(sliding_window=args.window, **shared),
        "HF Llama causal (SDPA)": LlamaConfig(**shared),
    }


def model_table(args) -> list[str]:
    from transformers import AutoModelForCausalLM

    from swat import SWATForCausalLM

    tokens = args.model_batch * args.model_seq
    lines = [f"# training step (forward+backward, bf16 autocast), {args.model_layers} layers, hidden "
             f"{args.model_hidden}, {args.heads} heads, batch {args.model_batch} x {args.model_seq} tokens",
             "| model | params (M) | ms / step | tok/s |", "|---|---|---|---|"]
    for name, config in _model_configs(args).items():
        try:
            if name.startswith("swat"):
                model = SWATForCausalLM(config)
            else:
                model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
            model = model.cuda().train()
            ids = torch.randint(0, config.vocab_size, (args.model_batch, args.model_seq), device="cuda")

            def step(model=model, ids=ids):
                model.zero_grad(set_to_none=True)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                loss.backward()

            ms = median_ms(step, args.warmup, args.repeats)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            lines.append(f"| {name} | {params:.0f} | {ms:.1f} | {tokens / ms * 1e3:.0f} |")
        except Exception as error:
            lines.append(f"| {name} | - | failed: {type(error).__name__}: {error} | - |")
        print(lines[-1], flush=True)
        model = None
        torch.cuda.empty_cache()
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_attention_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
              "benchmarks/bench_attention.py measures the CPU backends.")
        return 0
    torch._dynamo.config.cache_size_limit = 64  # FlexAttention compiles once per shape
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    # the peers that compile nothing first, then decoding and the sweep, the compiled peers last:
    # a run cut short by its time limit loses the slowest part
    quick = [name for name in args.peers if name not in COMPILED]
    swat_ms: dict = {}
    attention_table(args, quick, swat_ms)
    if args.decode:
        decode_table(args)
    if args.sweep:
        sweep_table(args)
    compiled = [name for name in args.peers if name in COMPILED]
    if compiled:
        print(f"\n# compiled peers ({', '.join(TITLES[name] for name in compiled)}), same columns", flush=True)
        attention_table(args, compiled, swat_ms, header=False)
    if args.model:
        print()
        model_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
