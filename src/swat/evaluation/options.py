"""Command-line options shared by the evaluation subcommands."""

from __future__ import annotations

import argparse


def add_text_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--text", required=required, metavar="FILE_OR_DIR",
                        help="held-out text: a UTF-8 text file, or a directory of prepared token shards")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
