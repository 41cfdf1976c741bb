"""lm-evaluation-harness tasks on a saved model (offline with local task files).

Runs lm-eval with swat's registered model class "swat" (context cut losslessly to the model's
receptive field L*(w-1)+1, documents streamed through the rolling cache for perplexity tasks).
Standard tasks (lambada_openai, piqa, hellaswag, winogrande, arc_easy, arc_challenge, ...) need
their datasets downloadable or cached; --include-path adds local task YAMLs. Writes harness.json,
harness.md and harness.png into --out.
"""

from __future__ import annotations

import argparse

from swat.cli.options import (
    add_device_argument,
    add_seed_argument,
    int_at_least,
    non_negative_int,
    positive_float,
)
from swat.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="saved model directory")
    parser.add_argument("--tasks", required=True,
                        help="comma-separated lm-eval task names, e.g. piqa,hellaswag,arc_easy")
    parser.add_argument("--include-path", default=None, metavar="DIR", help="directory of local task YAML files")
    parser.add_argument("--limit", type=positive_float, default=None,
                        help="examples per task (an int), or a fraction of each task (< 1)")
    parser.add_argument("--num-fewshot", type=non_negative_int, default=None, help="few-shot examples (default: the task's)")
    parser.add_argument("--max-length", type=int_at_least(2), default=None,
                        help="context tokens (default: max(max_position_embeddings, receptive field))")
    add_seed_argument(parser)
    parser.add_argument("--out", default="results/harness", help="output directory (default: results/harness)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files in --out that swat did not write (its own results are always replaced)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    try:
        from swat.evaluation.harness import harness_markdown, run_harness, write_harness_outputs
    except ImportError as error:
        raise UserError(f"lm-evaluation-harness is not installed ({error}): pip install 'swat-lm[eval]'") from error
    from swat.evaluation.results import OUTPUT_KINDS, claim_outputs

    limit = args.limit
    if limit is not None and limit >= 1:
        limit = int(limit)
    tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
    if not tasks:
        raise UserError(f"--tasks {args.tasks!r} names no task: pass comma-separated names, e.g. --tasks piqa,arc_easy")
    if args.limit is not None and args.limit != int(args.limit) and args.limit > 1:
        raise UserError(f"--limit {args.limit:g} is neither a whole number of examples nor a fraction < 1")
    claim_outputs(args.out, [f"harness.{kind}" for kind in OUTPUT_KINDS], args.overwrite)
    result = run_harness(args.model, tasks, include_path=args.include_path, limit=limit,
                         num_fewshot=args.num_fewshot, max_length=args.max_length, device=args.device,
                         seed=args.seed)
    paths = write_harness_outputs(result, args.out)
    print(harness_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
