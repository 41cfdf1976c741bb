"""The ``swat`` command line. Each subcommand lives in its own module of this package, which
defines ``add_arguments(parser)`` and ``run(args) -> int``; its docstring's first line is its help.

Errors in what the user passed are reported as one line, ``swat COMMAND: MESSAGE``, with exit code
2: argparse's usage errors, a :class:`swat.errors.UserError` (what every check of the user's
input raises, saying what to change) and the OS errors a user causes (a missing file, a
permission, an existing output). Set the environment variable ``SWAT_DEBUG=1`` to get the
traceback instead. Any other exception, a bare ``ValueError`` included, is a bug and shows its
traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from swat import __version__
from swat.errors import UserError

USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
               NotADirectoryError)
"""What ``main`` reports in one line: the user can correct each (other ``OSError``s, a full disk
or an I/O error, keep their traceback)."""

COMMANDS: dict[str, str] = {
    "demo": "swat.cli.demo",
    "data": "swat.cli.data",
    "train": "swat.cli.train",
    "generate": "swat.cli.generate",
    "diagnose": "swat.cli.diagnose",
    "reproduce": "swat.cli.reproduce",
}
EVAL_COMMANDS: dict[str, str] = {
    "length": "swat.cli.eval_length",
    "passkey": "swat.cli.eval_passkey",
    "harness": "swat.cli.eval_harness",
    "ppl": "swat.cli.eval_ppl",
}


def _add_module(subparsers, name: str, module_name: str) -> None:
    module = importlib.import_module(module_name)
    summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None
    parser = subparsers.add_parser(name, help=summary, description=module.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    parser.set_defaults(run=module.run, command=parser.prog.removeprefix("swat "))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swat", description="SWAT: sliding window attention training (sigmoid, balanced ALiBi, RoPE)."
    )
    parser.add_argument("--version", action="version", version=f"swat {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        _add_module(subparsers, name, module_name)
    if EVAL_COMMANDS:
        eval_parser = subparsers.add_parser("eval", help="evaluate models (perplexity, passkey, harness, ...)")
        eval_parser.set_defaults(run=_choose_evaluation, command="eval")
        eval_subparsers = eval_parser.add_subparsers(title="evaluations", metavar="EVAL")
        for name, module_name in EVAL_COMMANDS.items():
            _add_module(eval_subparsers, name, module_name)
    return parser


def _choose_evaluation(args: argparse.Namespace) -> int:
    raise UserError(f"choose an evaluation: swat eval {{{','.join(EVAL_COMMANDS)}}} (see swat eval --help)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["swat", *(sys.argv[1:] if argv is None else argv)])
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if os.environ.get("SWAT_DEBUG") == "1":
            raise
        message = " ".join(str(error).split("\n")).strip() or type(error).__name__
        print(f"swat {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
