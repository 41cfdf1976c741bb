"""Perplexity against context length for one or more models (rolling cache where windowed).

Cuts the held-out text into sequences of each length, scores every sequence from its start and
writes length.json, length.md and length.png (perplexity vs length, log x, one line per model;
loss by position bucket within the longest sequences) into --out.
"""

from __future__ import annotations

import argparse

from swat.cli.options import add_device_argument, add_text_argument, positive_int, token_counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "--models", dest="models", nargs="+", required=True, metavar="DIR",
                        help="saved model directory (or several)")
    add_text_argument(parser)
    parser.add_argument("--lengths", type=token_counts, default="256,512,1k,2k,4k",
                        help="evaluation lengths in tokens, k = 1024 (default: 256,512,1k,2k,4k)")
    parser.add_argument("--max-tokens", type=positive_int, default=65536,
                        help="about this many tokens are scored per length (default: 65536)")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="sequences per forward (default: 4)")
    parser.add_argument("--chunk-size", type=positive_int, default=1024,
                        help="tokens per forward through the cache (default: 1024)")
    parser.add_argument("--train-length", type=positive_int, default=None,
                        help="draw the training length on the plot (default: read from the run directory "
                             "of the first model, if it comes from a training run)")
    parser.add_argument("--out", default="results/length", help="output directory (default: results/length)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files in --out that swat did not write (its own results are always replaced)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    from swat.evaluation.heldout import read_tokens
    from swat.evaluation.length import evaluate_lengths, length_markdown, write_length_outputs
    from swat.evaluation.model_info import model_label, training_length
    from swat.evaluation.results import OUTPUT_KINDS, claim_outputs
    from swat.models.loading import load_model

    claim_outputs(args.out, [f"length.{kind}" for kind in OUTPUT_KINDS], args.overwrite)
    results = []
    for path in args.models:
        model, tokenizer = load_model(path, device=args.device)
        tokens = read_tokens(args.text, tokenizer, max_tokens=max(args.max_tokens, args.lengths[-1]))
        results.append(evaluate_lengths(model, tokens, args.lengths, max_tokens=args.max_tokens,
                                        batch_size=args.batch_size, chunk_size=args.chunk_size,
                                        label=model_label(path)))
    paths = write_length_outputs(results, args.out, args.train_length or training_length(args.models[0]))
    print(length_markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
