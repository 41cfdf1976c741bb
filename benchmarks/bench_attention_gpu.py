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

Columns: time (ms), ``ratio`` = peer time / ``swat triton`` time (> 1: ours is faster), TFLOP/s on
the useful band FLOPs (``2 * 2 * head_dim`` per (query, key) pair of the band and head forward,
``6 * 2 * head_dim`` forward+backward; SDPA causal computes more pairs than that, so its number is
an effective rate), and the max abs error against a float64 dense reference of the same math on
the first ``--error-len`` positions (same bf16 inputs). A peer that fails (not installed, does not
compile, out of memory) prints its reason and the table goes on.

``--model`` adds a training step (forward+backward, bf16 autocast) of a SWAT model (the
``triton`` backend through ``auto``) against Hugging Face Mistral (sliding window) and Llama (full
causal), both with ``attn_implementation="sdpa"``, at the same size, in tokens per second.

    python benchmarks/bench_attention_gpu.py                       # 8k, 32k, 128k; head_dim 64, 128
    python benchmarks/bench_attention_gpu.py --lengths 8192 --head-dims 64 --repeats 3 --model
"""

from __future__ import annotations

import argparse
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

PEERS = ("swat_triton", "swat_chunked", "flex_sigmoid", "flash_sw", "flex_softmax_sw", "sdpa_causal")
TITLES = {"swat_triton": "swat triton (sigmoid)", "swat_chunked": "swat chunked (sigmoid)",
          "flex_sigmoid": "flex sigmoid", "flash_sw": "flash-attn SW (softmax)",
          "flex_softmax_sw": "flex softmax SW", "sdpa_causal": "SDPA causal (softmax)"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", default="8192,32768,131072", help="comma separated sequence lengths")
    p.add_argument("--head-dims", default="64,128", help="comma separated head sizes")
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma separated subset of {','.join(PEERS)}")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--chunked-max-len", type=int, default=32768, help="the chunked backend is skipped above this")
    p.add_argument("--error-len", type=int, default=2048, help="positions of the float64 error check")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--model", action="store_true", help="also time a model training step (tok/s)")
    p.add_argument("--model-layers", type=int, default=12)
    p.add_argument("--model-hidden", type=int, default=1024)
    p.add_argument("--model-seq", type=int, default=4096)
    p.add_argument("--model-batch", type=int, default=4)
    args = p.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",")]
    args.head_dims = [int(x) for x in args.head_dims.split(",")]
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
                                          is_causal=True).transpose(1, 2)


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
        if not sigmoid:
            return compiled(qt, kt, vt, block_mask=mask).transpose(1, 2)
        out, lse = compiled(qt, kt, vt, score_mod=sigmoid_scores, block_mask=mask, return_lse=True)
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


def inputs(batch, n, heads, head_dim, seed=0, grad=False):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(batch, n, heads, head_dim, device="cuda", dtype=torch.bfloat16, generator=gen)
            .requires_grad_(grad) for _ in range(3)]


def peer_error(peer: Callable, problem: Problem, name: str, heads: int, head_dim: int, length: int) -> float:
    """Max abs error of ``peer``'s output against the float64 dense reference on ``length`` positions."""
    q, k, v = inputs(1, length, heads, head_dim, seed=1)
    with torch.no_grad():
        got = peer(q, k, v).double()
        want = reference_attention(q.double(), k.double(), v.double(), scale=head_dim ** -0.5,
                                   **problem.reference_kwargs(name))
    return (got - want).abs().max().item()


def time_peer(peer: Callable, args, n: int, head_dim: int, backward: bool) -> float:
    q, k, v = inputs(args.batch, n, args.heads, head_dim, grad=backward)
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


def attention_table(args) -> list[str]:
    problem = Problem(args.heads, args.window, torch.device("cuda"))
    modes = ["fwd"] + ([] if args.no_backward else ["fwd+bwd"])
    lines = [f"# batch {args.batch}, {args.heads} heads, window {args.window}, bf16; median of {args.repeats} "
             f"after {args.warmup} warm-up; error: max abs vs float64 reference on {args.error_len} positions",
             "| head_dim | n | mode | peer | ms | ratio (peer / swat triton) | band TFLOP/s | error |",
             "|---|---|---|---|---|---|---|---|"]
    for head_dim in args.head_dims:
        peers, errors = {}, {}
        for name in args.peers:
            try:
                peers[name] = make_peer(name, problem)
                errors[name] = f"{peer_error(peers[name], problem, name, args.heads, head_dim, args.error_len):.2e}"
            except Exception as error:  # a missing or failing peer is reported, the others still run
                print(f"# {TITLES[name]}, head_dim {head_dim}: unavailable ({type(error).__name__}: {error})",
                      flush=True)
                peers.pop(name, None)
        for n in args.lengths:
            for mode in modes:
                flops = (4 if mode == "fwd" else 12) * head_dim * band_pairs(n, args.window) * args.heads * args.batch
                times = {}
                for name, peer in peers.items():
                    if name == "swat_chunked" and n > args.chunked_max_len:
                        continue
                    try:
                        times[name] = time_peer(peer, args, n, head_dim, backward=mode == "fwd+bwd")
                    except Exception as error:
                        print(f"# {TITLES[name]}, n {n}, {mode}: failed ({type(error).__name__}: {error})",
                              flush=True)
                    torch.cuda.empty_cache()
                ours = times.get("swat_triton")
                for name, ms in times.items():
                    ratio = f"{ms / ours:.2f}" if ours else "-"
                    lines.append(f"| {head_dim} | {n} | {mode} | {TITLES[name]} | {ms:.3f} | {ratio} | "
                                 f"{flops / ms / 1e9:.1f} | {errors[name]} |")
                print(lines[-1] if times else f"# n {n} {mode}: nothing ran", flush=True)
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
    lines = attention_table(args)
    if args.model:
        lines += [""] + model_table(args)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
