"""The fast-gradient family: FGSM, I-FGSM (BIM), PGD and MI-FGSM, in the notation of the papers cited per class.

All maximize a per-point objective ``L`` (:mod:`advrobust.losses`; default cross-entropy) inside the
ball of the threat model; a targeted call maximizes the targeted form (``−CE(z, y_t)``), which is the
seed's ``x − ε·sign(∇_x L(θ, x, y_t))``. Steps go along the threat's steepest-ascent direction ``d``
(``sign`` for l∞, ``g/‖g‖₂`` for l2, the sparse step for l1) and every iterate is projected around
the clean input. The iterative ones share one loop (:mod:`advrobust.attacks.iterative`): they differ
only in their start, step size and momentum.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.inputs import check_nonnegative
from advrobust.attacks.iterative import GradientStep, IterativeAttack, MomentumStep, StepRule, steepest_step
from advrobust.losses import Objective, get_loss
from advrobust.threat import Threat


class FGSM(FixedBudgetAttack):
    """Fast Gradient Sign Method (Goodfellow et al. 2015, "Explaining and harnessing adversarial
    examples", eq. 3): ``x_adv = Π_B(x + ε·d(∇_x L(θ, x, y)))`` — one gradient, one step of the full
    budget (``d = sign`` for l∞; the l2 form steps ``ε·g/‖g‖₂``), clipped to the box ``B``.

    ``loss="ce"`` is the paper's cross-entropy. Points already misclassified are returned unchanged.
    Cost: one forward+backward pass per attacked point.
    """

    name = "fgsm"
    norms = ("linf", "l2")
    tasks = ("classification", "segmentation", "detection", "verification")

    def __init__(self, threat: Threat, *, loss: str | Objective = "ce", seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, seed=seed, eot=eot)
        get_loss(loss)
        self.loss = loss

    def _run(self, ctx: RunContext) -> Tensor:
        x, rows = ctx.x, ctx.pending()
        x_adv = x.clone()
        if rows.numel() == 0:
            return x_adv
        objective = ctx.oracle.task.objective(self.loss)
        t, y_rows = ctx.target_of(rows), ctx.y[rows]
        _, _, grad = ctx.oracle.logits_and_grad(x[rows], lambda z: objective(z, y_rows, t), index=rows)
        x_adv[rows] = steepest_step(self.threat, x[rows], x[rows], grad, float(self.threat.eps))
        return x_adv


class _FixedStep(IterativeAttack):
    """An iterative attack with a constant step size ``α``; ``step_size=None`` means
    ``α = step_factor·ε / steps`` (recomputed for each ε, so sweeps stay consistent)."""

    step_factor: ClassVar[float] = 1.0

    def __init__(self, threat: Threat, *, step_size: float | None, **kwargs) -> None:
        super().__init__(threat, **kwargs)
        self.step_size = check_nonnegative(type(self).__name__, "step_size", step_size)

    def alpha(self) -> float:
        if self.step_size is not None:
            return self.step_size
        return self.step_factor * float(self.threat.eps) / self.steps


class BIM(_FixedStep):
    """I-FGSM / Basic Iterative Method (Kurakin et al. 2017, "Adversarial examples in the physical
    world", eq. 2): ``x_0 = x``, ``x_{n+1} = Π_{x,ε}(x_n + α·d(∇_x L(θ, x_n, y)))``.

    Defaults: ``steps=10`` and ``step_size=None -> α = ε/n`` (the seed's rule: reach the ball's edge
    in ``n`` steps); the paper's own setting is :meth:`kurakin`. Registered as ``"i-fgsm"`` (alias
    ``"bim"``).
    """

    name = "i-fgsm"

    def __init__(self, threat: Threat, *, steps: int = 10, step_size: float | None = None, loss: str | Objective = "ce",
                 early_stop: bool = True, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, step_size=step_size, steps=steps, loss=loss, early_stop=early_stop, seed=seed, eot=eot)

    @classmethod
    def kurakin(cls, threat: Threat, **kwargs) -> BIM:
        """The paper's setting (Kurakin et al. 2017, §2.1): ``α = 1/255`` and
        ``n = min(ε·255 + 4, 1.25·ε·255)`` iterations (ε in ``[0, 1]`` pixel units)."""
        e255 = round(float(threat.eps) * 255, 6)  # 16/255·255 must give 16, not 15.999…
        steps = max(1, math.floor(min(e255 + 4, 1.25 * e255)))
        return cls(threat, steps=steps, step_size=1 / 255, **kwargs)

    def rule(self) -> StepRule:
        return GradientStep(self.threat, self.alpha())


class PGD(_FixedStep):
    """Projected Gradient Descent (Madry et al. 2018, "Towards deep learning models resistant to
    adversarial attacks", eq. 2 and §5): ``x_0 = x + U(ball)``,
    ``x_{n+1} = Π_{x,ε}(x_n + α·d(∇_x L(θ, x_n, y)))``, over ``restarts`` random starts.

    Defaults: ``steps=40``; ``step_size=None -> α = 2.5·ε/n`` (the usual rule, that of the Madry lab's ``robustness``
    library: it lets an iterate cross the ball and still reach its edge from anywhere); ``random_start=True`` (uniform
    in the ball, Madry et al.); ``restarts=1``; ``loss="ce"``. The paper's MNIST setting (40 steps of 0.01 at ε = 0.3)
    is :meth:`madry`. Defined for l∞, l2 and l1 (l1: the sparse step of
    :class:`~advrobust.threat.L1` with the exact l1-ball ∩ box projection).
    """

    name = "pgd"
    norms = ("linf", "l2", "l1")
    step_factor = 2.5

    def __init__(self, threat: Threat, *, steps: int = 40, step_size: float | None = None, random_start: bool = True,
                 restarts: int = 1, loss: str | Objective = "ce", early_stop: bool = True,
                 seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(
            threat,
            step_size=step_size,
            steps=steps,
            restarts=restarts,
            loss=loss,
            early_stop=early_stop,
            seed=seed,
            eot=eot,
        )
        self.random_start = bool(random_start)

    @classmethod
    def madry(cls, threat: Threat, **kwargs) -> PGD:
        """Madry et al. (2018), MNIST: 40 steps of size 0.01 from a uniform random start."""
        return cls(threat, steps=40, step_size=0.01, random_start=True, **kwargs)

    def start(self, x: Tensor, restart: int, generator: torch.Generator) -> Tensor:
        return self.threat.random_start(x, generator) if self.random_start else x.clone()

    def rule(self) -> StepRule:
        return GradientStep(self.threat, self.alpha())


class MIFGSM(_FixedStep):
    """Momentum Iterative FGSM (Dong et al. 2018, "Boosting adversarial attacks with momentum",
    eqs. 6–7): ``g_0 = 0``, ``g_{n+1} = μ·g_n + ∇_x L / ‖∇_x L‖₁`` (l1 norm per point),
    ``x_{n+1} = Π_{x,ε}(x_n + α·d(g_{n+1}))`` from ``x_0 = x``.

    Defaults from the paper: ``steps=10``, ``decay=1.0`` (μ), ``step_size=None -> α = ε/n``.
    """

    name = "mi-fgsm"

    def __init__(self, threat: Threat, *, steps: int = 10, decay: float = 1.0, step_size: float | None = None,
                 loss: str | Objective = "ce", early_stop: bool = True, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, step_size=step_size, steps=steps, loss=loss, early_stop=early_stop, seed=seed, eot=eot)
        self.decay = check_nonnegative("MIFGSM", "decay", decay)

    def rule(self) -> StepRule:
        return MomentumStep(self.threat, self.alpha(), float(self.decay))
