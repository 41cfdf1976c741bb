"""Train a SWAT language model from a config preset or YAML file (also under torchrun).

    swat train --config tiny                                  # minutes on a CPU (Shakespeare)
    swat train --config tiny --set model.sliding_window=128 optim.lr=1e-3 --out runs/w128
    swat train --out runs/mine --resume                       # continue from the last checkpoint, its own config
    swat train --out runs/mine --resume --set train.steps=600 # ... and train further
    swat train --config my.yaml --out runs/mine --overwrite   # replace the run in runs/mine
    torchrun --nproc_per_node=2 -m swat.cli.train --config tiny --out runs/tiny2   # DDP on 2 processes
    torchrun --nproc_per_node=4 -m swat.cli.train --config 340m --set data.dir=DATA
    swat train --config tiny --set model.preset=null model.type=mamba2 model.hidden_size=128 \
        model.num_hidden_layers=4 model.head_dim=32 model.expand=2 model.num_heads=8 --out runs/mamba2

Presets: tiny, small, 340m, 760m (the model in swat.models.presets, its training recipe in
src/swat/training/presets/NAME.yaml). model.type (default swat) may name any transformers causal
LM type instead (llama, mamba2, ...), with the fields of its config. The run directory
(swat.training.run_dir.RunDir) holds config.yaml, metrics.jsonl, checkpoints/ (each a Hugging Face
model dir with its tokenizer and model card) and final/ (the trained model); --out refuses a
directory that holds another run or other files unless --resume or --overwrite says what to do
with it. --resume continues only a run swat started in --out (its .swat-run marker), and refuses
while final/ or a checkpoint holds a file swat did not write there; without --config it continues
with the run's own config (RUN/config.yaml, --set on top of it), and a config that changes what
the run computes is refused. train.batch_size is the global batch, the same on any number of
processes; train.micro_batch_size bounds the sequences of one forward on one process. Large CPU
tensors are reused from step to step through swat's block cache (swat.utils.block_cache;
SWAT_NO_BLOCK_CACHE=1 leaves PyTorch's allocator alone).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from swat.cli.options import add_overrides_argument

DEFAULT_CONFIG = "tiny"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="a preset name (tiny, small, 340m, 760m) or a YAML file (default: tiny; with --resume: "
                             "the run's own config, RUN/config.yaml)")
    add_overrides_argument(parser, help="override config keys, e.g. --set model.sliding_window=128 optim.lr=1e-3 "
                                        "(or one --set per key); with --resume, on top of the run's own config")
    parser.add_argument("--out", default=None, help="run directory (default: runs/NAME); a directory that holds "
                                                    "another run or other files is refused")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run swat started in --out, from its last checkpoint, with its own config "
                             "unless --config is given (a change of what the run computes is refused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out (its config, metrics, checkpoints and final model)")
    parser.add_argument("--accept-data-change", action="store_true",
                        help="with --resume: continue although the data directory was prepared again since")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from swat.training import NonFiniteLossError, load_config, train
    from swat.training.run_dir import RunDir
    from swat.utils.block_cache import block_cache

    try:
        source, out = _config_and_out(args)
        config = load_config(source, args.overrides)
        if args.print_config:
            print(config.to_yaml(), end="")
            return 0
        with block_cache():  # large CPU tensors reused from step to step, not faulted in again
            run_dir = train(config, out, resume=args.resume, overwrite=args.overwrite,
                            accept_data_change=args.accept_data_change, command=_command(args))
    except NonFiniteLossError as error:
        print(f"swat train: {error}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        run = RunDir(run_dir)
        print(f"run directory: {run.root} ({run.metrics.name}, {run.checkpoints.name}/, {run.final.name}/)")
    return 0


def _config_and_out(args: argparse.Namespace) -> tuple[str, str | None]:
    """The config source and ``--out``: ``--config`` (default tiny) and ``--out`` as given, except
    that ``--resume`` without ``--config`` continues the run in ``--out`` (default ``runs/tiny``,
    the default config's) with its own config."""
    if args.config is not None or not args.resume:
        return args.config or DEFAULT_CONFIG, args.out
    from swat.training.run_dir import RunDir

    out = args.out if args.out is not None else f"runs/{DEFAULT_CONFIG}"
    return str(RunDir(out).own_config()), out


def _command(args: argparse.Namespace) -> str:
    """The command line that started the run, for its model card."""
    words = ["swat", "train"] + (["--config", args.config] if args.config is not None else [])
    words += ["--set", *args.overrides] if args.overrides else []
    words += ["--out", args.out] if args.out else []
    words += [flag for flag, on in (("--resume", args.resume), ("--overwrite", args.overwrite),
                                    ("--accept-data-change", args.accept_data_change)) if on]
    return shlex.join(words)


if __name__ == "__main__":  # torchrun --nproc_per_node=K -m swat.cli.train --config ...
    from swat.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
