"""The transformation contract: a seeded, batched, differentiable distribution over image edits.

A :class:`Transform` is a distribution ``T`` over functions ``t: [0,1]^{C×H×W} → [0,1]^{C×H×W}``
(Athalye, Engstrom, Ilyas & Kwok 2018, "Synthesizing robust adversarial examples", eq. 1: EOT
maximizes ``E_{t∼T}[log P(y_t | t(x'))]``). It is used in two steps, so the same draw can be applied
twice (to an image and to its mask) or checked:

    params = t.sample(x, generator)     # one draw per point of the batch, from a torch.Generator
    x_t = t.apply(x, params)            # differentiable in x (grid_sample, convolutions, sums)
    x_t = t(x, generator)               # both at once: the call an EOT loop makes

Every transform has a ``strength`` scale: :meth:`Transform.scaled` returns the same family with every
range multiplied by ``s`` (``s = 0`` is the identity, ``s = 1`` the documented ranges), which is how
success is measured against transformation strength.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError

Params = Any  # what sample() returns and apply() takes: a dict of per-point tensors, or a list of them


def check_range(owner: str, name: str, value: float, upper: float | None = None) -> float:
    """A magnitude ``≥ 0`` (and ``≤ upper`` when given), as a float; a one-line error otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not v >= 0 or v == float("inf") or (upper is not None and v > upper):
        bound = f" and <= {upper:g}" if upper is not None else ""
        raise InputError(f"{owner}: {name} must be finite, >= 0{bound}; got {value!r}")
    return v


def check_images(owner: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.dtype.is_floating_point:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{owner} transforms float images of shape (N, C, H, W), got {shape}")


def uniform(n: int, magnitude: float, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` draws from ``U(−magnitude, magnitude)`` on ``like``'s device and dtype."""
    u = torch.rand(n, generator=generator, dtype=like.dtype, device=like.device)
    return (2 * u - 1) * magnitude


class Transform(ABC):
    """A distribution of differentiable image transformations (see the module docstring)."""

    @abstractmethod
    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        """One draw of the transformation's parameters per point of the batch ``x``."""

    @abstractmethod
    def apply(self, x: Tensor, params: Params) -> Tensor:
        """The transformation given by ``params`` applied to ``x``; differentiable in ``x``."""

    @abstractmethod
    def scaled(self, strength: float) -> Transform:
        """The same family with every range multiplied by ``strength`` (0: the identity)."""

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images(type(self).__name__, x)
        return self.apply(x, self.sample(x, generator))

    def move_points(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        """Where the points ``points`` (``N×P×2``, ``(x, y)`` pixels of an ``size = (h, w)`` input,
        ``0`` the image's left/top edge) land in the output of :meth:`apply` with ``params``: how a
        label (a box, landmarks) follows the picture. Unchanged by default (photometric edits)."""
        return points

    def move_points_back(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        """The inverse of :meth:`move_points`: where the points ``points`` of the output of
        :meth:`apply` (``N×P×2`` pixels) were in the ``size = (h, w)`` input; how an output of the
        transformed picture (a detector's box) is carried back. Unchanged by default."""
        return points

    def move_map(self, maps: Tensor, params: Params, fill: int) -> Tensor:
        """A label map ``maps`` (``N×H×W`` integers, one per pixel of the input) as it lies over the
        output of :meth:`apply` with ``params``: each output pixel takes the label of the input pixel
        it is read from (nearest neighbour), ``fill`` where it is read from outside the input.
        Unchanged by default (photometric edits)."""
        return maps

    def moves_pixels(self) -> bool:
        """Whether a draw moves pixels (a geometric change), so that per-pixel labels or outputs must
        be moved too; ``False`` by default (photometric edits)."""
        return False

    def pull_back(self, maps: Tensor, params: Params) -> Tensor:
        """Per-pixel outputs ``maps`` (``N×C×h×w``) computed on the output of :meth:`apply` with
        ``params``, brought back over the input (bilinearly; zero where the input pixel left the
        picture): how a segmenter's scores of a transformed image line up with the original's
        labels. Unchanged by default."""
        return maps

    def describe(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class Identity(Transform):
    """No change: the digital setting."""

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        return {}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return x

    def scaled(self, strength: float) -> Transform:
        return self

    def describe(self) -> str:
        return "identity"


class Compose(Transform):
    """Apply transformations in order, each with its own draw: ``t_k ∘ … ∘ t_1``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        parts = list(transforms)
        for t in parts:
            if not isinstance(t, Transform):
                raise InputError(f"Compose takes Transform objects, got {type(t).__name__}")
        self.transforms = tuple(parts)

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        # each part draws on the batch as it will see it, so shape-dependent draws (noise) match
        return [t.sample(x, generator) for t in self.transforms]

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if len(params) != len(self.transforms):
            raise InputError(f"Compose: {len(self.transforms)} transforms but {len(params)} parameter sets")
        for t, p in zip(self.transforms, params, strict=True):
            x = t.apply(x, p)
        return x

    def move_points(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        for t, p in zip(self.transforms, params, strict=True):
            points = t.move_points(points, p, size)
        return points

    def move_points_back(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        for t, p in reversed(list(zip(self.transforms, params, strict=True))):
            points = t.move_points_back(points, p, size)
        return points

    def move_map(self, maps: Tensor, params: Params, fill: int) -> Tensor:
        for t, p in zip(self.transforms, params, strict=True):
            maps = t.move_map(maps, p, fill)
        return maps

    def moves_pixels(self) -> bool:
        return any(t.moves_pixels() for t in self.transforms)

    def pull_back(self, maps: Tensor, params: Params) -> Tensor:
        for t, p in reversed(list(zip(self.transforms, params, strict=True))):
            maps = t.pull_back(maps, p)
        return maps

    def scaled(self, strength: float) -> Transform:
        return Compose([t.scaled(strength) for t in self.transforms])

    def describe(self) -> str:
        return " ∘ ".join(t.describe() for t in reversed(self.transforms)) or "identity"

    def __repr__(self) -> str:
        return f"Compose({list(self.transforms)!r})"
