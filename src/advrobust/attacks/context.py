"""What an attack's ``_run`` is given: one call's batch, goal, random numbers and oracle."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advrobust.attacks.oracle import Oracle


@dataclass(frozen=True)
class RunContext:
    """One call of an attack, as its ``_run`` sees it.

    ``x`` (checked, in ``[0, 1]``), ``y`` (``int64`` labels), ``target`` (``None``: untargeted),
    ``generator`` (all of the call's random numbers), ``done`` (points already adversarial at
    ``r = 0``, which need no work), ``oracle`` (the only way to query the model, counted per point).
    """

    oracle: Oracle
    x: Tensor
    y: Tensor
    target: Tensor | None
    generator: torch.Generator
    done: Tensor

    def pending(self) -> Tensor:
        """Indices of the points still to attack (not ``done``)."""
        return (~self.done).nonzero().squeeze(1)

    def target_of(self, rows: Tensor) -> Tensor | None:
        """The targets of points ``rows`` (``None`` for an untargeted call)."""
        return None if self.target is None else self.target[rows]
