"""Command-line options shared by the subcommands that load a saved model."""

from __future__ import annotations

import argparse

from swat.evaluation.length import parse_lengths
from swat.models.loading import DTYPES


def add_text_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--text", required=required, metavar="FILE_OR_DIR",
                        help="held-out text: a UTF-8 text file, or a directory of prepared token shards")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32",
                        help="weights and activations (default: float32)")


def token_counts(spec: str) -> list[int]:
    """An argparse ``type`` for lists of token counts such as ``256,1k,4k``: a malformed list is
    reported as a usage error that names the bad entry."""
    try:
        return parse_lengths(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
