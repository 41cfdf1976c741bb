"""Command-line options shared by the subcommands, and the argparse types that check them.

Each ``type`` turns a bad value into a usage error (exit code 2) whose message says what to pass
instead, before any model is loaded."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from swat.errors import UserError
from swat.utils.checks import MAX_SEED, check_device, check_seeds

# the names of swat.models.loading.DTYPES (imported where a command runs: it imports torch)
DTYPE_NAMES = ("float32", "bfloat16", "float16", "float64")


def add_text_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--text", required=required, metavar="FILE_OR_DIR",
                        help="held-out text: a UTF-8 text file, or a directory of prepared token shards")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default="float32",
                        help="weights and activations (default: float32)")


def token_counts(spec: str) -> list[int]:
    """Lists of token counts such as ``256,1k,4k``; a malformed list names the bad entry."""
    from swat.evaluation.length import parse_lengths

    try:
        return parse_lengths(spec)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """The argparse type of integers >= ``minimum`` (and <= ``maximum``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: pass an integer >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is too small: pass an integer >= {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r} is too large: pass an integer <= {maximum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
seed = int_at_least(0, MAX_SEED)


def seed_list(text: str) -> list[int]:
    """Comma-separated training seeds, e.g. ``0,1,2`` (:func:`swat.utils.checks.check_seeds`)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read the seeds {text!r}: use whole numbers, e.g. 0,1,2") from None
    try:
        check_seeds(seeds)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return seeds


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE ...``: training config overrides, several after one ``--set`` or one per
    ``--set`` (both spellings, in any mix, give one list)."""
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help=help)


def add_seed_argument(parser: argparse.ArgumentParser, help: str = "random seed (default: 0)") -> None:
    parser.add_argument("--seed", type=seed, default=0, help=help)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: pass a number > 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative: pass a number >= 0")
    return value


def probability(text: str) -> float:
    """A number in (0, 1]."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not in (0, 1]: pass e.g. 0.95, or 1 for all of it")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite: pass a finite number")
    return value


def device(text: str) -> str:
    """A torch device name that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...)."""

    try:
        check_device(text, instead="pass --device cpu")
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text
