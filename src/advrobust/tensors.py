"""Small tensor helpers shared by the threat models and the attacks."""

from __future__ import annotations

from torch import Tensor


def flat(t: Tensor) -> Tensor:
    """A batch ``N×…`` as ``N×D``."""
    return t.flatten(1) if t.dim() > 1 else t.reshape(t.shape[0], -1)


def per_point(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-point vector ``N`` so it broadcasts against a batch ``N×…``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))
