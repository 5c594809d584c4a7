"""The inner maximization of TRADES: the input in the ball that moves the prediction furthest.

Zhang et al. (2019), "Theoretically principled trade-off between robustness and accuracy", eq. 5 and
Algorithm 1: ``max_{x' ∈ ball(x, ε)} KL(f(x) ‖ f(x'))``, ``f`` the softmax of the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.iterative import steepest_step
from advrobust.errors import InputError
from advrobust.threat import Threat


class KLAttack(FixedBudgetAttack):
    """Projected steepest ascent on ``KL(f(x) ‖ f(x'))`` from ``x'_0 = Π(x + 0.001·N(0, I))`` (the
    paper's init: at ``x' = x`` the KL and its gradient vanish),
    ``x'_{n+1} = Π_{x,ε}(x'_n + α·d(∇_{x'} KL))``, the last iterate kept (as in their code).

    ``step_size=None`` means ``α = 2.5·ε/steps`` (0.25·ε at 10 steps, near the paper's CIFAR-10
    ratio 0.007/0.031 ≈ 0.23·ε).
    """

    name = "trades-kl"
    norms = ("linf", "l2")
    init_std = 0.001  # Zhang et al. 2019, released code

    def __init__(self, threat: Threat, *, steps: int = 10, step_size: float | None = None, seed: int | None = 0,
                 eot: int = 1) -> None:
        super().__init__(threat, seed=seed, eot=eot)
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise InputError(f"KLAttack: steps must be an integer >= 1, got {steps!r}")
        if step_size is not None and not float(step_size) > 0:
            raise InputError(f"KLAttack: step_size must be > 0 or None (2.5·eps/steps), got {step_size!r}")
        self.steps = int(steps)
        self.step_size = step_size

    def alpha(self) -> float:
        """The step size in use: ``step_size``, or ``2.5·ε/steps``."""
        return 2.5 * float(self.threat.eps) / self.steps if self.step_size is None else float(self.step_size)

    def _run(self, ctx: RunContext) -> Tensor:
        oracle, x = ctx.oracle, ctx.x
        log_p = F.log_softmax(oracle.logits(x), dim=1)
        noise = torch.randn(x.shape, generator=ctx.generator, dtype=x.dtype, device=x.device)
        x_adv = self.threat.project(x + self.init_std * noise, x)

        def kl(z: Tensor) -> Tensor:
            return F.kl_div(F.log_softmax(z, dim=1), log_p, reduction="none", log_target=True).sum(dim=1)

        for _ in range(self.steps):
            _, _, grad = oracle.logits_and_grad(x_adv, kl)
            x_adv = steepest_step(self.threat, x, x_adv, grad, self.alpha())
        return x_adv
