"""FGSM with a random start: the inner step of fast adversarial training.

Wong, Rice & Kolter (2020), "Fast is better than free: revisiting adversarial training",
Algorithm 3: ``x_0 = Π_B(x + U(ball))``, ``x_adv = Π_{x,ε}(x_0 + α·d(∇_x CE(θ, x_0, y)))``, with
``α = 1.25·ε``. One gradient per point; the last (only) iterate is kept.
"""

from __future__ import annotations

from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.iterative import steepest_step
from advrobust.errors import InputError
from advrobust.losses import cross_entropy
from advrobust.threat import Threat


class RandomStartFGSM(FixedBudgetAttack):
    """One FGSM step of size ``α`` from a uniform random point of the ball (Wong et al. 2020,
    Algorithm 3). ``step_size=None`` means ``α = 1.25·ε`` (the paper's choice, recomputed for each ε).
    """

    name = "fgsm-rs"
    norms = ("linf", "l2")
    step_factor = 1.25

    def __init__(self, threat: Threat, *, step_size: float | None = None, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, seed=seed, eot=eot)
        if step_size is not None and not float(step_size) > 0:
            raise InputError(f"RandomStartFGSM: step_size must be > 0 or None (1.25·eps), got {step_size!r}")
        self.step_size = step_size

    def alpha(self) -> float:
        """The step size in use: ``step_size``, or ``1.25·ε``."""
        return self.step_factor * float(self.threat.eps) if self.step_size is None else float(self.step_size)

    def _run(self, ctx: RunContext) -> Tensor:
        x0 = self.threat.random_start(ctx.x, ctx.generator)
        _, _, grad = ctx.oracle.logits_and_grad(x0, lambda z: cross_entropy(z, ctx.y, ctx.target))
        return steepest_step(self.threat, ctx.x, x0, grad, self.alpha())
