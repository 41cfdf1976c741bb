"""What ``torch.compile(model)`` gives a SWAT training step on this machine: eager against compiled.

The ``tiny`` preset (4 layers, hidden 128, window 64) in fp32, the ``tiny`` recipe's micro-batch
(8 sequences of 256 random tokens); a step is forward with the model's own loss (``labels``),
backward and AdamW. Two copies of one model, one of them ``torch.compile``d (default backend,
inductor), take their steps in turn (one of each, ``--steps`` times, after ``--warmup`` steps of
each), so a shared machine's changing load hits both alike. It prints the median step time of each,
their ratio (> 1: compiled is faster), the compile time (the first compiled step less a median
one), the machine and the thread count.

    .venv/bin/python benchmarks/bench_compile.py                    # fused backend, 10 steps
    .venv/bin/python benchmarks/bench_compile.py --backend chunked --steps 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from swat import SWATForCausalLM  # noqa: E402
from swat.models.presets import preset_config  # noqa: E402
from swat.ops.device import describe_machine  # noqa: E402


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor) -> float:
    start = time.perf_counter()
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="fused", help="the model's attention_backend (default fused)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    print(f"{describe_machine()}; {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    eager = SWATForCausalLM(preset_config("tiny", attention_backend=args.backend)).train()
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin)
    models = {"eager": (eager, torch.optim.AdamW(eager.parameters())),
              "compiled": (compiled, torch.optim.AdamW(twin.parameters()))}
    batches = [torch.randint(0, eager.config.vocab_size, (args.batch, args.seq_len))
               for _ in range(args.warmup + args.steps)]
    times: dict[str, list[float]] = {name: [] for name in models}
    for tokens in batches:
        for name, (model, optimizer) in models.items():
            times[name].append(step(model, optimizer, tokens))
    eager_median, compiled_median = (statistics.median(times[name][args.warmup:]) for name in models)
    print(f"{args.backend}, batch {args.batch} x {args.seq_len} tokens, median of {args.steps} steps "
          f"after {args.warmup} warm-up steps")
    print(f"eager     {eager_median * 1e3:8.1f} ms/step")
    print(f"compiled  {compiled_median * 1e3:8.1f} ms/step   eager / compiled = {eager_median / compiled_median:.2f}")
    print(f"compile time (first compiled step less a median one): {times['compiled'][0] - compiled_median:.1f} s")


if __name__ == "__main__":
    main()
