"""Perplexity of a long text streamed through the model's cache in chunks.

The text file is tokenised with the model's tokenizer and fed --chunk-size tokens at a time. With
a window (SWAT, SWA) the rolling KV cache keeps memory independent of the text's length and the
time linear in it, so a whole book (10^5 to 10^6 tokens) fits; full-attention models work too,
with a cache that grows. Every token after the first is scored, given everything before it.
Prints the perplexity, the mean loss and the throughput in tokens/s.
"""

from __future__ import annotations

import argparse
import math
import time

from swat.evaluation.loading import read_tokens
from swat.evaluation.options import add_device_argument, add_dtype_argument
from swat.inference import streaming_nll
from swat.models.loading import DTYPES, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory with its tokenizer")
    parser.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text file to score")
    parser.add_argument("--chunk-size", type=int, default=1024, help="tokens per forward (default: 1024)")
    parser.add_argument("--max-tokens", type=int, default=None, help="score only the first N tokens")
    add_dtype_argument(parser)
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    if args.chunk_size < 1:
        raise SystemExit(f"--chunk-size must be >= 1, got {args.chunk_size}")
    model, tokenizer = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    tokens = read_tokens(args.text, tokenizer)[: args.max_tokens]
    if tokens.numel() < 2:
        raise SystemExit(f"{args.text} has {tokens.numel()} token(s): perplexity needs at least 2")
    start = time.perf_counter()
    nll = streaming_nll(model, tokens, args.chunk_size, progress=True)
    elapsed = time.perf_counter() - start
    loss = nll.double().mean().item()
    print(f"tokens: {tokens.numel():,}  chunk size: {args.chunk_size}  window: "
          f"{getattr(model.config, 'sliding_window', None)}")
    print(f"loss: {loss:.6f} nats/token")
    print(f"perplexity: {math.exp(loss):.6f}")
    print(f"throughput: {tokens.numel() / elapsed:,.0f} tokens/s ({elapsed:.2f} s)")
    return 0
