"""Per-token decode latency and peak memory far into a stream: SWAT against Llama and Mistral.

Three models of the same size (8 layers, hidden 512, 8 heads, vocab 32000, random fp32 weights):
SWAT (window 512, rolling cache), Hugging Face ``LlamaForCausalLM`` (full attention, growing
cache) and ``MistralForCausalLM`` (sliding window 512, transformers' sliding-window cache). At each
position the model's own cache is first filled to that position with random keys and values,
in chunks through the cache's ``update`` (the cost of a decode step depends on what the cache
holds, not on the values in it, and this reaches 64k without a quadratic full-attention
prefill), then single-token decode steps are timed and the median is reported. The three models'
steps are interleaved in one process, so a shared machine's changing load hits them alike; the
peak resident memory (``ru_maxrss``) of each comes from a separate process that runs only that
model. On a busy machine ``--threads 1`` gives steadier numbers. What would not fit in ``--max-memory-gib`` or take longer than ``--max-seconds`` is
estimated first and skipped with the reason printed.

    .venv/bin/python benchmarks/bench_decode.py                 # positions 1k, 16k, 64k
    .venv/bin/python benchmarks/bench_decode.py --quick         # 1k and 4k, fewer steps
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from swat import SWATConfig, SWATForCausalLM
from swat.cli.options import token_counts
from swat.inference import RollingCache

MODELS = ("swat", "mistral", "llama")
SIZE = dict(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
            num_attention_heads=8, num_key_value_heads=8)
WINDOW = 512
FILL_CHUNK = 4096
ASSUMED_BANDWIDTH = 3e9  # bytes/s a decode step streams through the cache on this kind of CPU (estimate only)


def build(name: str) -> torch.nn.Module:
    """A randomly initialised model of the benchmark size."""
    if name == "swat":
        return SWATForCausalLM(SWATConfig(**SIZE, sliding_window=WINDOW, max_position_embeddings=2**20))
    if name == "llama":
        return LlamaForCausalLM(LlamaConfig(**SIZE, max_position_embeddings=2**20))
    return MistralForCausalLM(MistralConfig(**SIZE, sliding_window=WINDOW, max_position_embeddings=2**20))


def new_cache(model):
    if hasattr(model.config, "attention_activation"):
        return RollingCache(model.config)
    return DynamicCache(config=model.config)


def stored_tokens(name: str, position: int) -> int:
    return position if name == "llama" else min(position, WINDOW)


def kv_bytes(name: str, position: int) -> int:
    head_dim = SIZE["hidden_size"] // SIZE["num_attention_heads"]
    per_token = 2 * SIZE["num_hidden_layers"] * SIZE["num_key_value_heads"] * head_dim * 4
    return per_token * stored_tokens(name, position)


def estimate(name: str, position: int, steps: int) -> tuple[float, float]:
    """(GiB, seconds) one (model, position) should need: the cache (twice, for the copy ``torch.cat`` makes)
    plus ~1.5 GiB of weights and libraries; fill and timed steps at ``ASSUMED_BANDWIDTH``."""
    cache = kv_bytes(name, position)
    gib = (2 * cache) / 2**30 + 1.5
    step_seconds = 0.02 + 3 * cache / ASSUMED_BANDWIDTH
    fill_seconds = position / FILL_CHUNK * 0.05 + cache / ASSUMED_BANDWIDTH
    return gib, fill_seconds + (steps + 3) * step_seconds + 10


def filled(name: str, position: int) -> tuple[torch.nn.Module, object]:
    """The model and its cache, filled with random keys and values up to ``position``."""
    torch.manual_seed(0)
    model = build(name).eval()
    cache = new_cache(model)
    config = model.config
    heads, head_dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    for start in range(0, position, FILL_CHUNK):
        length = min(FILL_CHUNK, position - start)
        for layer in range(config.num_hidden_layers):
            cache.update(torch.randn(1, heads, length, head_dim), torch.randn(1, heads, length, head_dim), layer)
    assert cache.get_seq_length() == position
    return model, cache


def decode_step(model, cache) -> float:
    start = time.perf_counter()
    model(input_ids=torch.zeros(1, 1, dtype=torch.long), cache=cache, use_cache=True)
    return time.perf_counter() - start


@torch.inference_mode()
def measure_latency(pairs: list[tuple[str, int]], steps: int, warmup: int) -> list[float]:
    """Median ms per decode step of each (model, position), all steps interleaved round-robin so
    that the changing load of a shared machine hits every measurement alike."""
    runs = [filled(name, position) for name, position in pairs]
    times = [[] for _ in pairs]
    for step in range(warmup + steps):
        for (model, cache), samples in zip(runs, times, strict=True):
            elapsed = decode_step(model, cache)
            if step >= warmup:
                samples.append(elapsed)
    return [1e3 * statistics.median(samples) for samples in times]


@torch.inference_mode()
def measure_memory(name: str, position: int) -> dict:
    """KV cache size and the peak resident memory of a process that only runs this model."""
    model, cache = filled(name, position)
    for _ in range(3):
        decode_step(model, cache)
    stored = cache.layers[0].keys.untyped_storage().nbytes()  # the whole buffer a view may sit in
    return dict(kv_mib=2 * model.config.num_hidden_layers * stored / 2**20,
                peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def worker(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    if job["kind"] == "latency":
        return {"ms": measure_latency([tuple(pair) for pair in job["pairs"]], job["steps"], job["warmup"])}
    return measure_memory(job["name"], job["position"])


def run_worker(job: dict) -> dict:
    """Runs ``job`` in a fresh interpreter (its own peak memory); ``{"error": ...}`` if it fails."""
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": f"worker failed: {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_all(names: list[str], positions: list[int], args: argparse.Namespace) -> list[dict]:
    """A row per (model, position): skipped with the reason, or latency and memory."""
    rows = []
    for position in positions:
        for name in names:
            gib, seconds = estimate(name, position, args.steps)
            row = dict(model=name, position=position)
            if gib > args.max_memory_gib or seconds > args.max_seconds:
                row["skipped"] = f"estimated {gib:.1f} GiB / {seconds:.0f} s > --max-memory-gib / --max-seconds"
            rows.append(row)
    runnable = [row for row in rows if "skipped" not in row]
    pairs = [(row["model"], row["position"]) for row in runnable]
    print(f"timing {len(pairs)} (model, position) pairs interleaved...", flush=True)
    latency = run_worker(dict(kind="latency", pairs=pairs, steps=args.steps, warmup=args.warmup, threads=args.threads))
    for row, ms in zip(runnable, latency.get("ms", [None] * len(runnable)), strict=True):
        memory = run_worker(dict(kind="memory", name=row["model"], position=row["position"], threads=args.threads))
        error = latency.get("error") or memory.get("error")
        if error:
            row["skipped"] = error
        else:
            row.update(ms=ms, **memory)
        print(f"  {row['model']:8s} at {row['position']:>7,}: " +
              (f"{row['ms']:.2f} ms/token, peak {row['peak_mib']:.0f} MiB" if "ms" in row else row["skipped"]),
              flush=True)
    return rows


def table(results: list[dict]) -> str:
    swat = {r["position"]: r["ms"] for r in results if r["model"] == "swat" and "ms" in r}
    lines = ["| model | position | ms/token (median) | x SWAT | KV cache MiB | peak RSS MiB |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['position']:,} | skipped: {r['skipped']} | | | |")
            continue
        ratio = f"{r['ms'] / swat[r['position']]:.2f}" if r["position"] in swat else "-"
        lines.append(f"| {r['model']} | {r['position']:,} | {r['ms']:.2f} | {ratio} | {r['kv_mib']:.1f} | "
                     f"{r['peak_mib']:.0f} |")
    return "\n".join(lines)


def summary(results: list[dict]) -> list[str]:
    ms = {(r["model"], r["position"]): r["ms"] for r in results if "ms" in r}
    positions = sorted({p for _, p in ms})
    notes = []
    ours = [p for p in positions if ("swat", p) in ms]
    if len(ours) >= 2:
        first, last = ours[0], ours[-1]
        notes.append(f"SWAT latency {last:,} / {first:,}: {ms[('swat', last)] / ms[('swat', first)]:.2f}x "
                     "(flat = 1.00)")
    for p in positions:
        for peer in ("mistral", "llama"):
            if ("swat", p) in ms and (peer, p) in ms:
                notes.append(f"at {p:,}: {peer} / SWAT latency = {ms[(peer, p)] / ms[('swat', p)]:.2f} "
                             "(> 1: SWAT is faster)")
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=token_counts, default="1k,16k,64k", help="comma-separated, k = 1024 (default: 1k,16k,64k)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=30, help="timed decode steps per measurement (default: 30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="positions 1k,4k, 10 steps (overrides both)")
    parser.add_argument("--max-memory-gib", type=float, default=8.0)
    parser.add_argument("--max-seconds", type=float, default=240.0, help="skip a measurement estimated longer")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.positions, args.steps, args.warmup = token_counts("1k,4k"), 10, 3
    names = [n.strip() for n in args.models.split(",")]
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}: choose from {MODELS}")
    print(f"decode benchmark: {SIZE}, window {WINDOW}, fp32, {args.threads} threads, "
          f"median of {args.steps} steps after {args.warmup} warm-up", flush=True)
    results = measure_all(names, args.positions, args)
    print()
    print(table(results))
    print()
    for note in summary(results):
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
