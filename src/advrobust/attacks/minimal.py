"""What every minimum-norm attack keeps per point: the smallest successful perturbation so far.

Shared by C&W, FMN, L-BFGS-B and JSMA: the best adversarial found is kept, never just the last
iterate; the fixed-budget counterpart is :class:`advrobust.attacks.iterative.BestTracker`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advrobust.attacks.context import RunContext
from advrobust.threat import Threat


class SmallestAdversarial:
    """Per point, the smallest successful ``x_adv`` offered so far (``norm = inf`` while none).

    Minimum-norm attacks keep this across all their steps and restarts, never the last iterate.
    Points in ``done`` (adversarial at ``r = 0``) start with ``norm = 0``.
    """

    def __init__(self, x: Tensor, threat: Threat, done: Tensor) -> None:
        self.x = x
        self.threat = threat
        self.x_best = x.clone()
        self.norm = torch.where(done, 0.0, math.inf).to(x.dtype)

    @classmethod
    def start(cls, ctx: RunContext, threat: Threat) -> tuple[SmallestAdversarial, Tensor]:
        """The tracker of one call, and the indices of the points still to attack."""
        best = cls(ctx.x, threat, ctx.done)
        return best, best.pending()

    def offer(self, index: Tensor, x_cand: Tensor, success: Tensor) -> None:
        """Candidates ``x_cand`` for the points ``index``; ``success`` marks those that are adversarial."""
        norm = self.threat.norm(x_cand - self.x[index])
        better = success & (norm < self.norm[index])
        if bool(better.any()):
            rows = index[better]
            self.norm[rows] = norm[better]
            self.x_best[rows] = x_cand[better].detach()

    def pending(self) -> Tensor:
        """Indices of the points with no adversarial yet (at the start: those not in ``done``)."""
        return torch.isinf(self.norm).nonzero().squeeze(1)
