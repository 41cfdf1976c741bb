"""Training throughput of whole models: SWAT against Hugging Face Llama and Mistral of the same size.

The three models of ``peers.py`` (8 layers, hidden 512, vocab 32000; SWAT and Mistral with a
window of 512, Llama with full causal attention) each take optimiser steps on one sequence of
random tokens per length: forward, the trainer's loss (:func:`swat.training.trainer.window_loss`,
float32 cross-entropy, as ``swat train`` computes it), backward and
``swat train``'s AdamW (:func:`swat.training.optim.build_optimizer`, torch's fused step). ``bf16`` is mixed precision as ``swat train`` runs it (fp32 weights and optimiser, bf16
autocast); ``fp32`` is plain fp32. Like ``swat train`` it sets ``THP_MEM_ALLOC_ENABLE=1`` (huge
pages for large tensors, :mod:`swat.utils.huge_pages`) unless the environment sets it, and puts
the block cache in front of PyTorch's CPU allocator (:mod:`swat.utils.block_cache`) unless
``SWAT_NO_BLOCK_CACHE=1``; the header line says both. Each model's attention is what it runs by default: SWAT's
``auto`` backend, transformers' SDPA for Llama (PyTorch's fused causal kernel) and for Mistral
(a dense band mask, so its cost grows with the square of the length).

For each length each model takes a warm-up step and then ``--steps`` timed steps, back to back,
the block cache emptied before its warm-up: a cache serves one step pattern, as in ``swat train``
(steps of two models taken in turn would each free the other's blocks). Cells are
tokens/s = tokens per step / median step time, ratios are SWAT's tokens/s over the peer's (> 1:
SWAT trains faster). Each case's line also gives the median system CPU time of a step (the
kernel's: almost all of it faulting in and zeroing fresh pages). Next to each model's tokens/s is the peak memory of one training step: the
peak RSS of a fresh process (``VmHWM``, the Python interpreter, torch and the model included)
that builds the model and takes one step; ``--no-memory`` leaves it out. SWAT's loss never holds
the ``[tokens x vocab]`` logits (``swat.models.loss.linear_cross_entropy``); the peers' does (the
32k-vocabulary logits of 32k tokens alone are 4 GiB in fp32). ``--gradient-checkpointing`` (as
``train.gradient_checkpointing``) cuts the activations to a layer's. A case whose memory or time,
estimated before it runs, exceeds ``--max-gib`` or ``--max-seconds`` is skipped with the estimate
printed.

    .venv/bin/python benchmarks/bench_model.py                          # 2k, 8k, 32k; fp32 and bf16
    .venv/bin/python benchmarks/bench_model.py --lengths 2k --dtypes fp32 --steps 2
    .venv/bin/python benchmarks/bench_model.py --lengths 2k,32k --models swat --gradient-checkpointing
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from swat.utils.huge_pages import ENV as HUGE_PAGES_ENV
from swat.utils.huge_pages import use_huge_pages

use_huge_pages()  # as swat's commands train: set before torch allocates anything

import torch  # noqa: E402
from peers import MODELS, SIZE, WINDOW, build, check_names, peak_rss_mib, print_report  # noqa: E402

from swat.cli.options import token_counts  # noqa: E402
from swat.models.compat import enable_activation_checkpointing  # noqa: E402
from swat.ops.device import describe_machine  # noqa: E402
from swat.training.config import OptimConfig  # noqa: E402
from swat.training.optim import build_optimizer  # noqa: E402
from swat.training.trainer import window_loss  # noqa: E402
from swat.utils.block_cache import empty_block_cache, use_block_cache  # noqa: E402

DTYPES = ("fp32", "bf16")
DEFAULT_THREADS = torch.get_num_threads()  # the machine's default (or OMP_NUM_THREADS)
ASSUMED_GFLOPS = {"fp32": 60.0, "bf16": 60.0}  # for the skip estimate only, pessimistic on purpose


def attention_pairs(name: str, length: int) -> int:
    """(query, key) pairs each head's attention computes: the band for SWAT, the causal triangle
    for Llama, the whole square for Mistral's dense masked SDPA."""
    if name == "swat":
        return length * min(WINDOW, length)
    if name == "llama":
        return length * (length + 1) // 2
    return length * length


def estimate(name: str, length: int, dtype: str, checkpointing: bool = False) -> tuple[float, float]:
    """(GiB, seconds) of one training step: activations (~30 values per layer and channel, 2 with
    gradient checkpointing; float32), the logits three times over (not for SWAT, whose loss takes
    the LM head chunk by chunk), the optimiser's state, and for Mistral the dense mask; the seconds
    from 6 FLOPs per parameter and token (8 with checkpointing's recomputation) plus the attention
    pairs at ``ASSUMED_GFLOPS``."""
    layers, hidden, vocab = SIZE["num_hidden_layers"], SIZE["hidden_size"], SIZE["vocab_size"]
    parameters = 2 * vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * SIZE["intermediate_size"])
    logits = 0 if name == "swat" else 3 * vocab
    activations = length * (layers * (2 if checkpointing else 30) * hidden + logits) * 4
    mask = length * length if name == "mistral" else 0
    gib = (activations + 16 * parameters + mask) / 2 ** 30 + 1.0
    flops = (8 if checkpointing else 6) * parameters * length + 4 * 4 * hidden * layers * attention_pairs(name, length)
    return gib, flops / (ASSUMED_GFLOPS[dtype] * 1e9)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, windows: torch.Tensor,
               bf16: bool) -> tuple[float, float]:
    """One optimiser step: (wall seconds, system CPU seconds of the process: mostly page faults)."""
    start, system = time.perf_counter(), os.times().system
    window_loss(model, windows, bf16=bf16).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, os.times().system - system


def measure_length(names: list[str], length: int, dtypes: list[str], args: argparse.Namespace) -> list[dict]:
    """Rows for one length: each (model, dtype) timed over its own steps, or skipped."""
    rows = []
    for dtype in dtypes:
        for name in names:
            gib, seconds = estimate(name, length, dtype, args.gradient_checkpointing)
            row = dict(model=name, length=length, dtype=dtype)
            if gib > args.max_gib or seconds * (args.steps + 1) > args.max_seconds:
                row["skipped"] = (f"estimated {gib:.1f} GiB, {seconds:.0f} s/step "
                                  f"(over --max-gib {args.max_gib:g} or --max-seconds {args.max_seconds:g})")
            rows.append(row)
    models = {}
    for row in rows:
        if "skipped" not in row and row["model"] not in models:
            torch.manual_seed(0)
            model = build(row["model"]).train()
            if args.gradient_checkpointing:
                enable_activation_checkpointing(model)
            models[row["model"]] = (model, build_optimizer(model, OptimConfig()))
    timed = [row for row in rows if "skipped" not in row]
    windows = torch.randint(0, SIZE["vocab_size"], (1, length + 1))
    for row in timed:
        model, optimizer = models[row["model"]]
        empty_block_cache()
        train_step(model, optimizer, windows, row["dtype"] == "bf16")  # warm-up
        times = [train_step(model, optimizer, windows, row["dtype"] == "bf16") for _ in range(args.steps)]
        row["seconds"] = statistics.median(wall for wall, _ in times)
        row["system_seconds"] = statistics.median(system for _, system in times)
        row["tokens_per_s"] = length / row["seconds"]
    del models
    for row in rows:
        if args.memory and "seconds" in row:
            row["peak_gib"] = peak_memory(row["model"], length, row["dtype"], args)
        memory = f", peak {row['peak_gib']:.2f} GiB" if row.get("peak_gib") else ""
        print(f"  {row['model']:8s} {row['dtype']} at {length:>6,}: "
              + (f"{row['tokens_per_s']:,.0f} tokens/s, {row['system_seconds']:.2f} s/step of system time{memory}"
                 if "seconds" in row else f"skipped, {row['skipped']}"),
              flush=True)
    return rows


def peak_memory(name: str, length: int, dtype: str, args: argparse.Namespace) -> float | None:
    """Peak RSS (GiB) of a fresh process that builds the model and takes one training step."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one-step", f"{name}:{length}:{dtype}",
               "--threads", str(args.threads)] + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  {name} {dtype} at {length:,}: peak memory not measured: {done.stderr.strip()[-300:]}")
        return None
    return float(done.stdout.split()[-1])


def one_step(case: str, args: argparse.Namespace) -> None:
    """``--one-step MODEL:LENGTH:DTYPE``: one training step, then the process's peak RSS in GiB."""
    name, length, dtype = case.split(":")
    torch.manual_seed(0)
    model = build(name).train()
    if args.gradient_checkpointing:
        enable_activation_checkpointing(model)
    optimizer = build_optimizer(model, OptimConfig())
    train_step(model, optimizer, torch.randint(0, SIZE["vocab_size"], (1, int(length) + 1)), dtype == "bf16")
    print(f"{peak_rss_mib() / 1024:.3f}")


def table(rows: list[dict], names: list[str]) -> str:
    speed = {(r["model"], r["length"], r["dtype"]): r.get("tokens_per_s") for r in rows}
    memory = {(r["model"], r["length"], r["dtype"]): r.get("peak_gib") for r in rows}
    with_memory = any(memory.values())
    peers = [name for name in names if name != "swat"]
    head = (["length", "dtype"] + [f"{name} tokens/s" + (" (peak GiB)" if with_memory else "") for name in names]
            + [f"SWAT / {peer}" for peer in peers if "swat" in names])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for length, dtype in dict.fromkeys((r["length"], r["dtype"]) for r in rows):
        cells = [f"{length:,}", dtype]
        for n in names:
            tokens, gib = speed[(n, length, dtype)], memory[(n, length, dtype)]
            cells.append("skipped" if not tokens else f"{tokens:,.0f}" + (f" ({gib:.2f})" if gib else ""))
        ours = speed.get(("swat", length, dtype))
        for peer in peers if "swat" in names else []:
            theirs = speed[(peer, length, dtype)]
            cells.append(f"{ours / theirs:.2f}" if ours and theirs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def growth(rows: list[dict]) -> list[str]:
    """SWAT's tokens/s at the longest length against the shortest, per dtype (flat = 1.00)."""
    notes = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        ours = sorted((r["length"], r["tokens_per_s"]) for r in rows
                      if r["model"] == "swat" and r["dtype"] == dtype and "tokens_per_s" in r)
        if len(ours) > 1:
            (short, fast), (long, slow) = ours[0], ours[-1]
            notes.append(f"SWAT {dtype}: tokens/s at {long:,} / at {short:,} = {slow / fast:.2f} (flat = 1.00)")
    return notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=token_counts, default="2k,8k,32k", help="comma-separated, k = 1024")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated subset of fp32,bf16")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case, after one warm-up (default: 3)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute each layer in the backward (train.gradient_checkpointing): memory for 32k")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="default: the machine's default")
    parser.add_argument("--max-gib", type=float, default=18.0, help="skip a case estimated to need more memory")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="skip a case estimated to take longer")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="do not measure each case's peak memory (one more step per case, in a fresh process)")
    parser.add_argument("--one-step", metavar="MODEL:LENGTH:DTYPE",
                        help="only build MODEL, take one training step and print the peak RSS in GiB")
    args = parser.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not args.dtypes or set(args.dtypes) - set(DTYPES):
        parser.error(f"--dtypes takes a comma-separated subset of {','.join(DTYPES)}")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    args.models = check_names([n.strip() for n in args.models.split(",") if n.strip()])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = use_block_cache()  # as swat train runs
    if args.one_step:
        one_step(args.one_step, args)
        return 0
    default = " (the machine's default)" if args.threads == DEFAULT_THREADS else ""
    print(f"# model training benchmark on {describe_machine()}, {args.threads} threads{default}: {SIZE}, window {WINDOW}, "
          f"batch 1, forward + loss + backward + AdamW{', gradient checkpointing' if args.gradient_checkpointing else ''}, "
          f"median of {args.steps} steps, {HUGE_PAGES_ENV}={os.environ.get(HUGE_PAGES_ENV)}, "
          f"block cache {'on' if cache else 'off'}", flush=True)
    rows = []
    for length in args.lengths:
        rows += measure_length(args.models, length, args.dtypes, args)
    print_report(table(rows, args.models), growth(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
