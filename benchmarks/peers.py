"""The models the model-level benchmarks compare, all of one size: SWAT and its two Hugging Face peers.

- ``swat``: :class:`swat.SWATForCausalLM`, sigmoid sliding window 512 with balanced ALiBi + RoPE;
- ``mistral``: ``MistralForCausalLM``, softmax sliding window 512 (transformers' attention: a
  dense masked SDPA, so its cost grows with the square of the length);
- ``llama``: ``LlamaForCausalLM``, full causal softmax attention (PyTorch's fused SDPA kernel).

8 layers, hidden 512, 8 heads of 64, SwiGLU 1408, vocabulary 32000: about 57M parameters, 25M of
them outside the embeddings. Weights are random (speed does not depend on them).
"""

from __future__ import annotations

import os
import resource

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from swat import SWATConfig, SWATForCausalLM

MODELS = ("swat", "mistral", "llama")
SIZES = {
    "benchmark": dict(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=8),
    # for the scripts' smoke tests only (tests/benchmarks): the same code paths in seconds
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4),
}
# SWAT_BENCH_SIZE=tiny in the environment (inherited by the scripts' worker processes) picks the tiny size.
SIZE = SIZES[os.environ.get("SWAT_BENCH_SIZE", "benchmark")]
WINDOW = 512
MAX_POSITIONS = 2 ** 20


def build(name: str) -> torch.nn.Module:
    """A randomly initialised model of the benchmark size."""
    if name == "swat":
        return SWATForCausalLM(SWATConfig(**SIZE, sliding_window=WINDOW, max_position_embeddings=MAX_POSITIONS))
    if name == "llama":
        return LlamaForCausalLM(LlamaConfig(**SIZE, max_position_embeddings=MAX_POSITIONS))
    if name == "mistral":
        return MistralForCausalLM(MistralConfig(**SIZE, sliding_window=WINDOW, max_position_embeddings=MAX_POSITIONS))
    raise ValueError(f"unknown model {name!r}: choose from {MODELS}")


def check_names(names: list[str]) -> list[str]:
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown models {unknown}: choose from {','.join(MODELS)}")
    return names


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: the kernel's high-water mark of its address space
    (``VmHWM``), which starts afresh at ``exec``. (``ru_maxrss`` does not: a worker started by a
    benchmark would report at least the benchmark's own memory at the time it was started.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def print_report(table: str, notes: list[str]) -> None:
    """The table of a benchmark run, then its notes as a list."""
    print()
    print(table)
    print()
    for note in notes:
        print(f"- {note}")
