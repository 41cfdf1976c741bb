"""Passkey retrieval: accuracy against context length and key distance (heat map).

Hides a random number in filler text at chosen distances from the question (inside the window,
between the window and the receptive field L*(w-1)+1, beyond it) and checks whether the model
repeats it greedily. Writes passkey.json, passkey.md and passkey.png into --out.
"""

from __future__ import annotations

import argparse

from swat.cli.options import add_device_argument, add_seed_argument, positive_int, token_counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", nargs="+", required=True, metavar="DIR", help="saved model directory (or several)")
    parser.add_argument("--lengths", type=token_counts, default=None,
                        help="context lengths in tokens, k = 1024 (default: from the first model's window "
                             "and depth: 1x, 2x, 4x its receptive field)")
    parser.add_argument("--distances", type=token_counts, default=None,
                        help="key distances in tokens (default: w-1, between w and the receptive field, "
                             "twice the receptive field)")
    parser.add_argument("--trials", type=positive_int, default=5, help="random keys per cell (default: 5)")
    add_seed_argument(parser, help="random seed of the keys (default: 0)")
    parser.add_argument("--out", default="results/passkey", help="output directory (default: results/passkey)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files in --out that swat did not write (its own results are always replaced)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    from swat.evaluation.model_info import model_label
    from swat.evaluation.passkey import (
        default_grid,
        evaluate_passkey,
        passkey_markdown,
        write_passkey_outputs,
    )
    from swat.evaluation.results import OUTPUT_KINDS, claim_outputs
    from swat.models.loading import load_model

    claim_outputs(args.out, [f"passkey.{kind}" for kind in OUTPUT_KINDS], args.overwrite)
    results, grid = [], None
    for path in args.model:
        model, tokenizer = load_model(path, device=args.device)
        if grid is None:
            lengths, distances = default_grid(model.config)
            grid = (args.lengths or lengths, args.distances or distances)
        results.append(evaluate_passkey(model, tokenizer, *grid, trials=args.trials, seed=args.seed,
                                        label=model_label(path)))
    paths = write_passkey_outputs(results, args.out)
    print(passkey_markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
