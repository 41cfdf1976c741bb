"""Perplexity of a long text streamed through the model's cache in chunks.

The text file is read and tokenised with the model's tokenizer a piece at a time (cut only where
the cut leaves the tokens unchanged) and fed --chunk-size tokens at a time through one cache. With
a window (SWAT, SWA) the rolling KV cache keeps memory independent of the text's length and the
time linear in it, so a text of any size fits; full-attention models work too, with a cache that
grows. Every token after the first is scored, given everything before it. Prints the perplexity,
the mean loss and the throughput in tokens/s.
"""

from __future__ import annotations

import argparse
import time

from swat.cli.options import (
    add_device_argument,
    add_dtype_argument,
    add_text_argument,
    int_at_least,
    positive_int,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory with its tokenizer")
    add_text_argument(parser)
    parser.add_argument("--chunk-size", type=positive_int, default=1024, help="tokens per forward (default: 1024)")
    parser.add_argument("--max-tokens", type=int_at_least(2), default=None, help="score only the first N tokens")
    add_dtype_argument(parser)
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    from swat.evaluation.heldout import token_pieces
    from swat.evaluation.model_info import model_kind
    from swat.evaluation.perplexity import stream_loss
    from swat.models.loading import DTYPES, load_model
    from swat.models.loss import perplexity

    model, tokenizer = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    start = time.perf_counter()
    result = stream_loss(model, token_pieces(args.text, tokenizer), chunk_size=args.chunk_size,
                         max_tokens=args.max_tokens, progress=True)
    elapsed = time.perf_counter() - start
    print(f"tokens: {result.tokens:,}  chunk size: {args.chunk_size}  model: "
          f"{model_kind(model.config)}")
    print(f"loss: {result.loss:.6f} nats/token")
    print(f"perplexity: {perplexity(result.loss):.6f}")
    print(f"throughput: {result.tokens / elapsed:,.0f} tokens/s ({elapsed:.2f} s)")
    return 0
