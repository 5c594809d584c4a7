"""Learning-rate schedules, as a factor of the peak ``lr`` at each optimizer step.

The factor is a function of ``t = step / total_steps`` in [0, 1], stepped once per batch:

* ``constant``: 1.
* ``cosine``: ``(1 + cos(π t)) / 2`` (SGDR without restarts, Loshchilov & Hutter 2017, Eq. 5 with
  ``η_min = 0``).
* ``cyclic``: one triangle, linear from 0 up to 1 at ``t = 2/5`` and back down to 0 at ``t = 1``
  (the schedule of "fast is better than free", Wong et al. 2020, their released code).
* ``onecycle``: the 1cycle policy (Smith & Topin 2019) with torch's ``OneCycleLR`` defaults: cosine
  warm-up from ``1/25`` to 1 over the first 30 % of steps, cosine annealing to ``1/(25·10⁴)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from advrobust.errors import InputError

ONECYCLE_PCT_START = 0.3  # torch OneCycleLR default
ONECYCLE_DIV = 25.0  # initial lr = max / 25
ONECYCLE_FINAL_DIV = 1e4  # final lr = initial / 1e4
CYCLIC_PEAK = 0.4  # Wong et al. 2020: peak at 2/5 of training


def _cos(start: float, end: float, frac: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * frac)) / 2


def _onecycle(t: float) -> float:
    low = 1 / ONECYCLE_DIV
    if t < ONECYCLE_PCT_START:
        return _cos(low, 1.0, t / ONECYCLE_PCT_START)
    return _cos(1.0, low / ONECYCLE_FINAL_DIV, (t - ONECYCLE_PCT_START) / (1 - ONECYCLE_PCT_START))


def _cyclic(t: float) -> float:
    return t / CYCLIC_PEAK if t < CYCLIC_PEAK else (1 - t) / (1 - CYCLIC_PEAK)


SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "cosine": lambda t: (1 + math.cos(math.pi * t)) / 2,
    "cyclic": _cyclic,
    "onecycle": _onecycle,
}


class _Factor:
    """``step -> SCHEDULES[name](step / total)``: a picklable callable, so ``LambdaLR`` state holds
    only numbers."""

    def __init__(self, name: str, total_steps: int) -> None:
        self.name, self.total_steps = name, max(1, total_steps)

    def __call__(self, step: int) -> float:
        return SCHEDULES[self.name](min(step, self.total_steps) / self.total_steps)


def make_scheduler(name: str, optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """A per-step scheduler for ``optimizer`` following the schedule ``name`` over ``total_steps``."""
    if name not in SCHEDULES:
        raise InputError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULES)}")
    return LambdaLR(optimizer, _Factor(name, total_steps))
