"""Input checks shared by the defences: one-line errors that say how to fix the call."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from advrobust.errors import InputError


def positive_int(owner: str, name: str, value: Any) -> int:
    """``value`` as an ``int >= 1``, else an :class:`InputError` naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or int(value) < 1:
        raise InputError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_pixels(x: Any) -> Tensor:
    """``x`` if it is a float batch ``(N, ...)`` of pixels in ``[0, 1]``."""
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point or x.dim() < 2:
        raise InputError("x must be a float tensor of shape (N, C, H, W) with pixels in [0, 1]")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise InputError("x must lie in [0, 1]: pass raw pixels (normalization belongs inside the model)")
    return x
