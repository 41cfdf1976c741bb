"""Checks of arguments that many functions share, raising :class:`swat.errors.UserError`s that say what to pass."""

from __future__ import annotations

from swat.errors import UserError


def check_count(name: str, value: object, minimum: int = 1, what: str = "") -> None:
    """``value`` must be an ``int`` (not a bool) >= ``minimum``; ``what`` explains it in the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        explained = f" ({what})" if what else ""
        raise UserError(f"{name} must be an int >= {minimum}{explained}, got {value!r}")
