"""Per-token decode latency and peak memory far into a stream: SWAT against Llama and Mistral.

Three models of the same size (``peers.py``: 8 layers, hidden 512, 8 heads, vocab 32000, random
weights): SWAT (window 512, rolling cache), Hugging Face ``LlamaForCausalLM`` (full attention,
growing cache) and ``MistralForCausalLM`` (sliding window 512, transformers' sliding-window
cache), with weights and cache in fp32 or bf16 (``model.to(torch.bfloat16)``), decoding one
stream or a batch of them at once. For each case the model's own cache is first filled to the
position with random keys and values, in chunks through the cache's ``update`` (the cost of a
decode step depends on what the cache holds, not on the values in it, and this reaches 64k
without a quadratic full-attention prefill), then decode steps (one token per stream) are timed
and the median is reported, with tokens/s = batch / step time. All cases' steps are interleaved
in one process, so a shared machine's changing load hits them alike; the peak resident memory
(``VmHWM``) of each comes from a separate process that runs only that case. On a busy machine
``--threads 1`` gives steadier numbers. What would not fit in ``--max-memory-gib`` or take longer
than ``--max-seconds`` is estimated first and skipped with the reason printed.

    .venv/bin/python benchmarks/bench_decode.py                 # positions 1k, 16k, 64k, fp32
    .venv/bin/python benchmarks/bench_decode.py --quick         # 1k and 4k, fewer steps
    .venv/bin/python benchmarks/bench_decode.py --positions 4k --dtypes fp32,bf16 --batches 1,4,16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import NamedTuple

import torch
from peers import MODELS, SIZE, WINDOW, build, check_names, peak_rss_mib, print_report
from transformers import DynamicCache

from swat.cli.options import token_counts
from swat.inference import RollingCache
from swat.ops.device import describe_machine

FILL_CHUNK = 4096
ASSUMED_BANDWIDTH = 3e9  # bytes/s a decode step streams through the cache on this kind of CPU (estimate only)


def new_cache(model):
    if hasattr(model.config, "attention_activation"):
        return RollingCache(model.config)
    return DynamicCache(config=model.config)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEFAULT_THREADS = torch.get_num_threads()  # the machine's default (or OMP_NUM_THREADS)


class Case(NamedTuple):
    """One measurement: a model with weights and cache in ``dtype``, ``batch`` streams, each
    ``position`` tokens in."""
    model: str
    dtype: str
    batch: int
    position: int


def stored_tokens(name: str, position: int) -> int:
    return position if name == "llama" else min(position, WINDOW)


def kv_bytes(case: Case) -> int:
    head_dim = SIZE["hidden_size"] // SIZE["num_attention_heads"]
    per_token = 2 * SIZE["num_hidden_layers"] * SIZE["num_key_value_heads"] * head_dim * DTYPES[case.dtype].itemsize
    return per_token * stored_tokens(case.model, case.position) * case.batch


def estimate(case: Case, steps: int) -> tuple[float, float]:
    """(GiB, seconds) one case should need: the cache (twice, for the copy ``torch.cat`` makes)
    plus ~1.5 GiB of weights and libraries; fill and timed steps at ``ASSUMED_BANDWIDTH``."""
    position = case.position
    cache = kv_bytes(case)
    gib = (2 * cache) / 2**30 + 1.5
    step_seconds = 0.02 + 3 * cache / ASSUMED_BANDWIDTH
    fill_seconds = position / FILL_CHUNK * 0.05 + cache / ASSUMED_BANDWIDTH
    return gib, fill_seconds + (steps + 3) * step_seconds + 10


def filled(case: Case) -> tuple[torch.nn.Module, object, torch.Tensor]:
    """The model (weights in the case's dtype, as ``model.to(dtype)`` gives), its cache filled
    with random keys and values up to the case's position, and the next input tokens."""
    torch.manual_seed(0)
    dtype = DTYPES[case.dtype]
    model = build(case.model).eval().to(dtype)
    cache = new_cache(model)
    config = model.config
    heads, head_dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    for start in range(0, case.position, FILL_CHUNK):
        shape = (case.batch, heads, min(FILL_CHUNK, case.position - start), head_dim)
        for layer in range(config.num_hidden_layers):
            cache.update(torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype), layer)
    assert cache.get_seq_length() == case.position
    return model, cache, torch.zeros(case.batch, 1, dtype=torch.long)


def decode_step(model, cache, tokens) -> float:
    start = time.perf_counter()
    model(input_ids=tokens, cache=cache, use_cache=True)
    return time.perf_counter() - start


@torch.inference_mode()
def measure_latency(cases: list[Case], steps: int, warmup: int) -> list[float]:
    """Median ms per decode step (one token for each of the batch's streams) of each case, all
    steps interleaved round-robin so that the changing load of a shared machine hits every
    measurement alike."""
    runs = [filled(case) for case in cases]
    times = [[] for _ in cases]
    for step in range(warmup + steps):
        for (model, cache, tokens), samples in zip(runs, times, strict=True):
            elapsed = decode_step(model, cache, tokens)
            if step >= warmup:
                samples.append(elapsed)
    return [1e3 * statistics.median(samples) for samples in times]


@torch.inference_mode()
def measure_memory(case: Case) -> dict:
    """KV cache size and the peak resident memory of a process that only runs this case."""
    model, cache, tokens = filled(case)
    for _ in range(3):
        decode_step(model, cache, tokens)
    stored = cache.layers[0].keys.untyped_storage().nbytes()  # the whole buffer a view may sit in
    return dict(kv_mib=2 * model.config.num_hidden_layers * stored / 2**20,
                peak_mib=peak_rss_mib())


def worker(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    if job["kind"] == "latency":
        return {"ms": measure_latency([Case(*case) for case in job["cases"]], job["steps"], job["warmup"])}
    return measure_memory(Case(*job["case"]))


def run_worker(job: dict) -> dict:
    """Runs ``job`` in a fresh interpreter (its own peak memory); ``{"error": ...}`` if it fails."""
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": f"worker failed: {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_all(cases: list[Case], args: argparse.Namespace) -> list[dict]:
    """A row per case: skipped with the reason, or latency, tokens/s and memory."""
    rows = []
    for case in cases:
        gib, seconds = estimate(case, args.steps)
        row = dict(case._asdict())
        if gib > args.max_memory_gib or seconds > args.max_seconds:
            row["skipped"] = f"estimated {gib:.1f} GiB / {seconds:.0f} s > --max-memory-gib / --max-seconds"
        rows.append(row)
    runnable = [row for row in rows if "skipped" not in row]
    jobs = [Case(**{key: row[key] for key in Case._fields}) for row in runnable]
    print(f"timing {len(jobs)} cases interleaved...", flush=True)
    job = dict(kind="latency", cases=jobs, steps=args.steps, warmup=args.warmup, threads=args.threads)
    latency = run_worker(job) if args.memory else worker(job)
    for row, case, ms in zip(runnable, jobs, latency.get("ms", [None] * len(runnable)), strict=True):
        memory = run_worker(dict(kind="memory", case=case, threads=args.threads)) if args.memory else {}
        error = latency.get("error") or memory.get("error")
        if error:
            row["skipped"] = error
        else:
            row.update(ms=ms, tokens_per_s=1e3 * case.batch / ms, **memory)
        peak = f", peak {row['peak_mib']:.0f} MiB" if "peak_mib" in row else ""
        print(f"  {describe(case)}: " + (f"{row['ms']:.2f} ms/step, {row['tokens_per_s']:.0f} tokens/s{peak}"
                                         if "ms" in row else row["skipped"]), flush=True)
    return rows


def describe(case: Case) -> str:
    return f"{case.model:8s} {case.dtype} batch {case.batch:>3} at {case.position:>7,}"


def table(results: list[dict]) -> str:
    swat = {(r["dtype"], r["batch"], r["position"]): r["ms"] for r in results if r["model"] == "swat" and "ms" in r}
    lines = ["| model | dtype | batch | position | ms/step (median) | tokens/s | x SWAT | KV cache MiB | peak RSS MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        head = f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['position']:,} |"
        if "skipped" in r:
            lines.append(f"{head} skipped: {r['skipped']} | | | | |")
            continue
        ours = swat.get((r["dtype"], r["batch"], r["position"]))
        ratio = "-" if ours is None else f"{r['ms'] / ours:.2f}"
        kv, peak = (f"{r[key]:.1f}" if key in r else "-" for key in ("kv_mib", "peak_mib"))
        lines.append(f"{head} {r['ms']:.2f} | {r['tokens_per_s']:,.0f} | {ratio} | {kv} | {peak} |")
    return "\n".join(lines)


def summary(results: list[dict]) -> list[str]:
    """The comparisons the table supports: SWAT's latency along the stream, against its peers,
    bf16 against fp32, and tokens/s as the batch grows."""
    ms = {Case(**{key: r[key] for key in Case._fields}): r["ms"] for r in results if "ms" in r}
    notes = []
    for (model, dtype, batch), rows in _group(ms, "position").items():
        if model == "swat" and len(rows) > 1:
            (first, t0), (last, t1) = rows[0], rows[-1]
            notes.append(f"SWAT {dtype} batch {batch}: latency at {last:,} / at {first:,} = {t1 / t0:.2f} (flat = 1.00)")
    for case, t in ms.items():
        if case.model != "swat":
            continue
        for peer in ("mistral", "llama"):
            if case._replace(model=peer) in ms:
                notes.append(f"{case.dtype} batch {case.batch} at {case.position:,}: {peer} / SWAT latency = "
                             f"{ms[case._replace(model=peer)] / t:.2f} (> 1: SWAT is faster)")
        if case.dtype == "bf16" and case._replace(dtype="fp32") in ms:
            notes.append(f"SWAT batch {case.batch} at {case.position:,}: bf16 / fp32 latency = "
                         f"{t / ms[case._replace(dtype='fp32')]:.2f}")
    for (model, dtype, position), rows in _group(ms, "batch").items():
        if len(rows) > 1:
            rates = ", ".join(f"batch {batch}: {1e3 * batch / t:,.0f}" for batch, t in rows)
            notes.append(f"{model} {dtype} at {position:,}, tokens/s by batch: {rates}")
    return notes


def _group(ms: dict[Case, float], field: str) -> dict[tuple, list[tuple[int, float]]]:
    """The measurements that differ only in ``field``, sorted by it, keyed by the other fields."""
    groups: dict[tuple, list[tuple[int, float]]] = {}
    for case, t in ms.items():
        others = tuple(value for name, value in case._asdict().items() if name != field)
        groups.setdefault(others, []).append((getattr(case, field), t))
    return {key: sorted(rows) for key, rows in groups.items()}


def _dtypes(spec: str) -> list[str]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names or set(names) - set(DTYPES):
        raise argparse.ArgumentTypeError(f"--dtypes takes a comma-separated subset of {','.join(DTYPES)}, got {spec!r}")
    return names


def _batches(spec: str) -> list[int]:
    try:
        batches = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"--batches takes comma-separated whole numbers >= 1, e.g. 1,4,16, got {spec!r}")
    return batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=token_counts, default="1k,16k,64k", help="comma-separated, k = 1024 (default: 1k,16k,64k)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    parser.add_argument("--dtypes", type=_dtypes, default="fp32",
                        help="comma-separated weight and cache dtypes, fp32 and/or bf16 (default: fp32)")
    parser.add_argument("--batches", type=_batches, default="1",
                        help="comma-separated numbers of streams decoded at once (default: 1)")
    parser.add_argument("--steps", type=int, default=30, help="timed decode steps per measurement (default: 30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="default: the machine's default")
    parser.add_argument("--quick", action="store_true", help="positions 1k,4k, 10 steps (overrides both)")
    parser.add_argument("--max-memory-gib", type=float, default=8.0)
    parser.add_argument("--max-seconds", type=float, default=240.0, help="skip a measurement estimated longer")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="time in this process and leave out the memory columns (no worker processes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.positions, args.steps, args.warmup = token_counts("1k,4k"), 10, 3
    names = check_names([n.strip() for n in args.models.split(",")])
    cases = [Case(name, dtype, batch, position) for dtype in args.dtypes for batch in args.batches
             for position in args.positions for name in names]
    default = " (the machine's default)" if args.threads == DEFAULT_THREADS else ""
    print(f"decode benchmark on {describe_machine()}: {SIZE}, window {WINDOW}, {args.threads} threads{default}, "
          f"median of {args.steps} steps after {args.warmup} warm-up", flush=True)
    results = measure_all(cases, args)
    print_report(table(results), summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
