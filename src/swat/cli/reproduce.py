"""Reproduce the paper's comparisons at the tiny scale: train 8 configs, evaluate, write results/.

Trains Transformer++, softmax SWA, sigmoid SWA (RoPE only; one-sided ALiBi), SWAT (balanced
ALiBi + RoPE, sigmoid_bias = -log(w), the SWATConfig default), SWAT without RoPE, SWAT trained
short and SWAT with sigmoid_bias = 0 on the embedded Shakespeare corpus with the same seed, data
and token budget, then evaluates all at 1x to 16x the training length, on passkey retrieval and
for attention sinks. Writes summary.md, reproduce.json, and length/passkey/attention
.json/.md/.png into --out. About an hour on two CPU cores by default; --minutes scales the token
budget. Re-running reuses finished runs in OUT/runs.

--budget decisive runs the comparison the paper is about, at a budget that can tell the models
apart: SWAT, Transformer++, softmax SWA, sigmoid SWA with one-sided ALiBi and a Mamba2 of the same
parameter count, 1500 steps (3.1M tokens) each, seeds 0-4 for SWAT, sigmoid SWA with one-sided
ALiBi and Mamba2 (the claims whose differences are small) and 0-2 for the others, 32k held-out
tokens per evaluation length; the summary gives mean +- std over the seeds and each claim's paired
differences (below). Before it starts it prints the training time it expects from the seconds per
step it measures (about 2.5 h on two AVX-512 cores without AMX, where Mamba2's pure-PyTorch path
takes 0.64 s a step against 0.18-0.21 s for the attention models), plus minutes of evaluation;
--estimate prints that and stops. --configs, --steps, --seeds and
--eval-tokens override the budget's values; several invocations with disjoint --configs can train
side by side into one --out (each run is locked), and a last one evaluates them all.

Claims are decided from configs paired by seed (same seed, same batches): a claim holds or fails
only where each difference's 95% interval (t over the seeds) excludes 0. --summarize rebuilds summary.md and the claims in
reproduce.json from the evaluations saved in OUT/reproduce.json, training and evaluating nothing
(the runs need not exist), e.g. after a change of the claims' statistics.
"""

from __future__ import annotations

import argparse

from swat.cli.options import add_overrides_argument, positive_float, positive_int, seed_list
from swat.errors import UserError

BUDGET_NAMES = ("decisive",)  # swat.experiments.reproduce.BUDGETS (imported where the command runs: torch)
# The result files reproduce writes into --out (its runs/ are run directories, owned as such).
OUTPUT_KINDS = ("json", "md", "png")  # swat.evaluation.results.OUTPUT_KINDS (imported where it runs: matplotlib)
OUTPUTS = ["summary.md", "reproduce.json", *(f"{name}.{kind}" for name in ("length", "passkey", "attention")
                                             for kind in OUTPUT_KINDS)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=positive_float, default=60.0,
                        help="wall-time budget that sets the training steps (default: 60)")
    parser.add_argument("--steps", type=positive_int, default=None, help="optimiser steps per config (overrides --minutes)")
    parser.add_argument("--out", default="results", help="output directory (default: results)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace result files in --out that swat did not write (its own are always replaced)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="prepared data directory (default: the embedded Shakespeare corpus, prepared if missing)")
    parser.add_argument("--preset", default="tiny", help="training preset of every config (default: tiny)")
    add_overrides_argument(parser, help="override the base training config for all configs, e.g. "
                                        "--set model.hidden_size=64 train.seed=3 (or one --set per key)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated configs (default: the 8 above), e.g. transformer++,swat; mamba2 (the recurrent baseline); "
                             "also swat-retain-S for S in 1, 0.5, 0.25, 0.125, 0.0625, 0 (retaining slopes scaled by S)")
    parser.add_argument("--eval-tokens", type=positive_int, default=None,
                        help="held-out tokens per evaluation length (default: 16k per hour of --minutes, "
                             "at least one sequence of 16x the training length)")
    parser.add_argument("--passkey-trials", type=positive_int, default=5, help="random keys per passkey cell (default: 5)")
    parser.add_argument("--seeds", type=seed_list, default=None,
                        help="comma-separated training seeds, each config trained once per seed, e.g. 0,1,2 "
                             "(default: the budget's, else the preset's seed)")
    parser.add_argument("--budget", choices=BUDGET_NAMES, default=None,
                        help="a preset of configs, steps, seeds and evaluation tokens: decisive = the 5 configs of "
                             "the paper's headline comparison incl. mamba2, 1500 steps, seeds 0-4 for swat, "
                             "sigmoid-swa-alibi and mamba2 and 0-2 for the others (about 2.5 h on 2 CPU cores)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the parameter counts and the training time expected on this machine, "
                             "measured from one step of each config, and stop (nothing is trained)")
    parser.add_argument("--summarize", action="store_true",
                        help="rebuild OUT/summary.md and the claims from the evaluations saved in OUT/reproduce.json; "
                             "nothing is trained or evaluated")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's choice); on a busy machine 1 can be much faster")


def run(args: argparse.Namespace) -> int:
    import torch

    from swat.evaluation.results import claim_outputs
    from swat.experiments.reproduce import rebuild_summary, reproduce, summary_markdown

    if args.summarize:
        claim_outputs(args.out, ["summary.md"], args.overwrite)  # reproduce.json is its input
        print(summary_markdown(rebuild_summary(args.out, command=args.command_line)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    names = None
    if args.configs is not None:
        names = [n.strip() for n in args.configs.split(",") if n.strip()]
        if not names:
            raise UserError(f"--configs {args.configs!r} names no config: pass e.g. --configs transformer++,swat")
    if not args.estimate:
        claim_outputs(args.out, OUTPUTS, args.overwrite)  # before hours of training, not after
    result = reproduce(args.out, minutes=args.minutes, steps=args.steps, preset=args.preset,
                       overrides=args.overrides, data_dir=args.data, names=names,
                       eval_tokens=args.eval_tokens, passkey_trials=args.passkey_trials, seeds=args.seeds,
                       budget=args.budget, command=args.command_line, estimate_only=args.estimate)
    if args.estimate:
        return 0
    print(summary_markdown(result))
    print(f"wall time {result['wall_seconds']['total'] / 60:.1f} min; results in {args.out}/")
    return 0
