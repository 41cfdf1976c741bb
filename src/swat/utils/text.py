"""The one reader of UTF-8 text files: what is not UTF-8 text (another encoding, a binary file)
is refused with a :class:`swat.errors.UserError` that says how to convert it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from swat.errors import UserError

BLOCK_CHARS = 1 << 18  # characters read at a time


def text_blocks(path: str | Path, block_chars: int = BLOCK_CHARS) -> Iterator[str]:
    """The text of ``path``, ``block_chars`` characters at a time (memory does not grow with the
    file), refusing what is not UTF-8 text."""
    path = Path(path)
    with path.open(encoding="utf-8") as file:
        while True:
            try:
                block = file.read(block_chars)
            except UnicodeDecodeError as error:
                raise UserError(f"{path} is not UTF-8 text ({error}): pass a UTF-8 text file "
                                "(convert it with e.g. iconv -t utf-8), or a prepared data directory") from None
            if not block:
                return
            if "\x00" in block:
                raise UserError(f"{path} contains NUL bytes, so it is binary, not text: pass a UTF-8 text file "
                                "or a prepared data directory")
            yield block


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file (see :func:`text_blocks`)."""
    return "".join(text_blocks(path))
