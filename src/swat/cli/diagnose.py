"""Diagnostics of trained models (``swat diagnose attention``: sinks, total weight, variance).

``swat diagnose attention --model DIR [DIR ...] --text FILE`` runs each model on held-out text and
reports, per layer and head, the share of attention on the first tokens (the sink), the total
weight per query (sigmoid weights need not sum to one) and the variance of the weights; with two
or more models the figure puts them side by side (e.g. a softmax Transformer++ and SWAT).
Writes attention.json, attention.md and attention.png into --out.
"""

from __future__ import annotations

import argparse

from swat.cli.options import add_device_argument, add_text_argument, int_at_least, positive_int
from swat.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(title="diagnostics", metavar="DIAGNOSTIC")
    attention = subparsers.add_parser("attention", help="attention sink, total weight and variance per head",
                                      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    attention.add_argument("--model", nargs="+", required=True, metavar="DIR", help="saved model directories")
    add_text_argument(attention)
    attention.add_argument("--length", type=int_at_least(2), default=512, help="tokens per sequence (default: 512)")
    attention.add_argument("--sequences", type=positive_int, default=4, help="sequences of held-out text (default: 4)")
    attention.add_argument("--sink-tokens", type=positive_int, default=4,
                           help="how many first tokens count as the sink (default: 4)")
    attention.add_argument("--out", default="results/attention", help="output directory (default: results/attention)")
    attention.add_argument("--overwrite", action="store_true",
                           help="replace files in --out that swat did not write (its own results are always replaced)")
    add_device_argument(attention)
    attention.set_defaults(run=run_attention)


def run(args: argparse.Namespace) -> int:
    raise UserError("choose a diagnostic: swat diagnose attention (see swat diagnose --help)")


def run_attention(args: argparse.Namespace) -> int:
    from swat.evaluation.attention import attention_markdown, diagnose_attention, write_attention_outputs
    from swat.evaluation.heldout import read_tokens, sequences_of
    from swat.evaluation.model_info import model_label
    from swat.evaluation.results import OUTPUT_KINDS, claim_outputs
    from swat.models.loading import load_model

    claim_outputs(args.out, [f"attention.{kind}" for kind in OUTPUT_KINDS], args.overwrite)
    results = []
    for path in args.model:
        model, tokenizer = load_model(path, device=args.device)
        tokens = read_tokens(args.text, tokenizer, max_tokens=args.length * args.sequences)
        sequences = sequences_of(tokens, args.length, args.sequences)
        results.append(diagnose_attention(model, sequences, sink_tokens=args.sink_tokens, label=model_label(path)))
    paths = write_attention_outputs(results, args.out)
    print(attention_markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
