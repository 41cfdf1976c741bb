"""Checks of arguments that many functions share, raising :class:`swat.errors.UserError`s that say what to pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swat.errors import UserError

if TYPE_CHECKING:
    import torch


def check_count(name: str, value: object, minimum: int = 1, what: str = "") -> None:
    """``value`` must be an ``int`` (not a bool) >= ``minimum``; ``what`` explains it in the message."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        explained = f" ({what})" if what else ""
        raise UserError(f"{name} must be an int >= {minimum}{explained}, got {value!r}")


MAX_SEED = 2**32 - 1  # the largest seed torch, numpy and random all take


def check_seeds(seeds) -> None:
    """Training seeds: at least one, distinct whole numbers in ``0 .. MAX_SEED``."""
    if not seeds or len(set(seeds)) != len(seeds) or not all(
            isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED for seed in seeds):
        raise UserError(f"seeds must be distinct whole numbers >= 0, e.g. 0,1,2, got {list(seeds)!r}")


def check_device(text: str, instead: str, present: bool = True) -> torch.device:
    """The torch device ``text`` names (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...); with
    ``present``, one this machine has. ``instead`` says what to pass otherwise, in the words of
    where it was set (``"pass --device cpu"``, ``"use train.device=cpu or auto"``)."""
    import torch  # here, not at import: the CLI's argument parsing must not load torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"{text!r} is not a torch device: pass e.g. cpu, cuda, cuda:0 or mps") from None
    if not present or device.type == "cpu":
        return device
    module = getattr(torch, device.type, None)
    if device.type == "mps":
        count = int(torch.backends.mps.is_available())
    elif module is not None and hasattr(module, "is_available") and module.is_available():
        count = module.device_count() if hasattr(module, "device_count") else 1
    else:
        count = 0
    if count == 0:
        raise UserError(f"the device {text!r} is not available on this machine: {instead}")
    if device.index is not None and device.index >= count:
        raise UserError(f"the device {text!r} does not exist: this machine has {count} {device.type} device(s), "
                        f"{device.type}:0 to {device.type}:{count - 1}; {instead}, or one of those")
    return device
