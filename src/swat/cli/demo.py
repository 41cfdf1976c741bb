"""Build a tiny SWAT model and run a forward/backward pass and a short generation on random tokens.

A smoke test of the installation: no data, no download. It prints the model, the loss before and
after a few optimiser steps, and checks that streaming through the rolling cache reproduces the
full forward's logits.
"""

from __future__ import annotations

import argparse
import time

from swat.cli.options import add_seed_argument, int_at_least, positive_int

PRESET_NAMES = ("tiny", "small", "340m", "760m")  # swat.models.PRESETS (imported where the demo runs: torch)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="tiny", help="model preset (default: tiny)")
    parser.add_argument("--seq-len", type=int_at_least(2), default=256,
                        help="training sequence length; longer than the window shows it slide (default: 256)")
    parser.add_argument("--steps", type=positive_int, default=20,
                        help="optimiser steps on a repeated random batch (default: 20)")
    add_seed_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from swat.inference import RollingCache
    from swat.models import SWATForCausalLM, preset_config

    torch.manual_seed(args.seed)
    config = preset_config(args.preset)
    model = SWATForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: preset {args.preset}, {params / 1e6:.2f}M parameters, window {config.sliding_window}, "
          f"{config.attention_activation} attention, alibi={config.alibi}, rope={config.use_rope}")
    tokens = torch.randint(0, config.vocab_size, (2, args.seq_len))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for step in range(args.steps):
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step in (0, args.steps - 1):
            print(f"step {step:3d}  loss {loss.item():.4f}")
    elapsed = time.perf_counter() - start
    print(f"{args.steps} steps of forward+backward at seq_len {args.seq_len}: {elapsed:.2f}s "
          f"({args.steps * tokens.numel() / elapsed:,.0f} tokens/s)")

    model.eval()
    with torch.no_grad():
        full = model(tokens[:1]).logits
        cache = RollingCache(config)
        streamed = torch.cat([model(chunk, cache=cache, use_cache=True).logits
                              for chunk in tokens[:1].split(37, dim=1)], dim=1)
    print(f"streaming in chunks of 37 through the cache vs one full forward: max |logit diff| "
          f"{(streamed - full).abs().max().item():.2e}")
    generated = model.generate(tokens[:1, :16], max_new_tokens=32, do_sample=False)
    print(f"greedy generation: {generated.shape[1] - 16} new tokens: {generated[0, 16:].tolist()}")
    return 0
