"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", Algorithm 1, §3) and its targeted version APGD-T (§4, the one in
AutoAttack's standard ensemble).

APGD is PGD with momentum and a step size that adapts itself, so it needs no tuning. In the paper's
notation, from ``x^(0)`` (a random point of the ball) and ``η^(0) = 2ε``:

* ``x^(1) = P_S(x^(0) + η^(0)·d(∇f(x^(0))))``;
* ``z^(k+1) = P_S(x^(k) + η^(k)·d(∇f(x^(k))))``,
  ``x^(k+1) = P_S(x^(k) + α·(z^(k+1) − x^(k)) + (1 − α)·(x^(k) − x^(k−1)))`` with ``α = 0.75``;
* at the checkpoints ``w_j = ⌈p_j·N_iter⌉``, ``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``, the step size of a point is halved and the
  point restarts from its best iterate ``x_max`` if
  (1) ``Σ_{i=w_{j−1}}^{w_j−1} 1[f(x^(i+1)) > f(x^(i))] < ρ·(w_j − w_{j−1})`` with ``ρ = 0.75``, or
  (2) its step size was not halved at ``w_{j−1}`` and ``f_max`` did not improve since ``w_{j−1}``.

``d`` is the threat's steepest-ascent direction (sign for l∞, ``g/‖g‖₂`` for l2). For l1 this module
implements the plain version (the threat's sparse top-k step with ``η^(0) = 2ε`` and the exact
l1-ball ∩ box projection), *not* the adaptive-sparsity l1-APGD of Croce & Hein (2021, "Mind the
box"); prefer l∞/l2 APGD or PGD with care on l1.

Best iterates, early stop and restarts are those of the shared loop
(:mod:`advrobust.attacks.iterative`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from advrobust.attacks.context import RunContext
from advrobust.attacks.inputs import check_positive_int
from advrobust.attacks.iterative import Active, IterativeAttack, StepRule, steepest_step
from advrobust.errors import InputError
from advrobust.losses import Objective
from advrobust.tensors import per_point
from advrobust.threat import Threat

#: momentum weight α of Croce & Hein (2020), §3.2
MOMENTUM = 0.75


def checkpoints(steps: int) -> list[int]:
    """The checkpoints ``w_j = ⌈p_j·N_iter⌉`` of Croce & Hein (2020, §3.2), ``p_j ≤ 1``."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # round away the float noise of the p_j before the ceiling (0.41·100 must give 41, not 42)
    return sorted({math.ceil(round(q * steps, 6)) for q in p})


def halve_step(
    increases: Tensor, window: int, rho: float, reduced: Tensor, f_max_check: Tensor, f_max: Tensor
) -> Tensor:
    """Per point: does condition (1) or (2) of Croce & Hein (2020, §3.2) ask to halve the step?"""
    too_few_increases = increases < rho * window
    stalled = ~reduced & (f_max_check >= f_max)
    return too_few_increases | stalled


class APGDStep(StepRule):
    """One APGD step with its step-size schedule (module docstring). Per-point state: the step size
    ``eta``, the previous iterate, the best iterate of this run with its loss and gradient, the count
    of loss increases since the last checkpoint, and what the last checkpoint decided."""

    def __init__(self, threat: Threat, steps: int, rho: float) -> None:
        super().__init__(threat)
        self.rho = rho
        self.checkpoints = [w for w in checkpoints(steps) if w > 0]
        self.last_check = 0

    def init(self, active: Active) -> None:
        n, x0 = len(active), active.x_cur
        vec = torch.zeros(n, dtype=x0.dtype, device=x0.device)
        active.state.update(
            eta=vec + 2 * float(self.threat.eps),
            x_prev=x0.clone(),
            x_max=x0.clone(),
            grad_max=torch.zeros_like(x0),
            f_max=vec - math.inf,
            f_prev=vec - math.inf,
            f_max_check=vec - math.inf,
            increases=vec.clone(),
            reduced=torch.zeros(n, dtype=torch.bool, device=x0.device),
        )

    def step(self, n: int, active: Active, grad: Tensor, loss: Tensor) -> Tensor:
        s = active.state
        x_cur = active.x_cur
        improved = loss > s["f_max"]
        wide = per_point(improved, x_cur)
        s["x_max"] = torch.where(wide, x_cur, s["x_max"])
        s["grad_max"] = torch.where(wide, grad, s["grad_max"])
        s["f_max"] = torch.where(improved, loss, s["f_max"])
        if n == 0:
            s["f_max_check"] = s["f_max"].clone()
        else:
            s["increases"] += (loss > s["f_prev"]).to(loss.dtype)
        s["f_prev"] = loss
        if n in self.checkpoints:
            halve = halve_step(
                s["increases"], n - self.last_check, self.rho, s["reduced"], s["f_max_check"], s["f_max"]
            )
            s["eta"] = torch.where(halve, s["eta"] / 2, s["eta"])
            wide = per_point(halve, x_cur)
            x_cur = torch.where(wide, s["x_max"], x_cur)
            grad = torch.where(wide, s["grad_max"], grad)
            s["reduced"] = halve
            s["f_max_check"] = s["f_max"].clone()
            s["increases"] = torch.zeros_like(s["increases"])
            self.last_check = n
        z = steepest_step(self.threat, active.x, x_cur, grad, s["eta"])
        if n > 0:
            blend = x_cur + MOMENTUM * (z - x_cur) + (1 - MOMENTUM) * (x_cur - s["x_prev"])
            z = self.threat.project(blend, active.x)
        s["x_prev"] = x_cur
        return z


class APGD(IterativeAttack):
    """Auto-PGD (Croce & Hein 2020, Algorithm 1); see the module docstring for the equations.

    Defaults from the paper / AutoAttack's standard version: ``steps=100`` (N_iter), ``restarts=1``,
    ``rho=0.75`` (ρ), momentum ``α = 0.75``, ``η^(0) = 2ε``, a uniform random start in the ball.
    ``loss="ce"`` (APGD-CE; the registry's ``"apgd-dlr"`` sets ``loss="dlr"``, APGD-DLR, eq. 6).
    Targeted calls maximize the targeted form of the loss. ``early_stop=True``: a point stops at its
    first success (AutoAttack keeps iterating on it, which cannot change the robust accuracy).
    """

    name = "apgd-ce"
    norms = ("linf", "l2", "l1")

    def __init__(self, threat: Threat, *, steps: int = 100, restarts: int = 1, loss: str | Objective = "ce",
                 rho: float = 0.75, early_stop: bool = True, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, steps=steps, restarts=restarts, loss=loss, early_stop=early_stop, seed=seed, eot=eot)
        if not 0.0 <= float(rho) <= 1.0:
            raise InputError(f"{type(self).__name__}: rho must be in [0, 1], got {rho!r}")
        self.rho = float(rho)

    def start(self, x: Tensor, restart: int, generator: torch.Generator) -> Tensor:
        return self.threat.random_start(x, generator)

    def rule(self) -> StepRule:
        return APGDStep(self.threat, self.steps, self.rho)


class APGDT(APGD):
    """Targeted APGD on the DLR loss (Croce & Hein 2020, §4, targeted DLR of eq. 7), as in
    AutoAttack's APGD-T: for an untargeted call, APGD runs once per target class ``t`` among the
    ``n_target_classes`` highest-scoring wrong classes at the clean input (by decreasing logit),
    maximizing ``DLR_targeted(x, y, t)``, on the points still unbroken; success means *any*
    misclassification. With ``target`` given, it is plain targeted APGD-DLR towards that target.

    Defaults of AutoAttack's standard version: ``n_target_classes=9``, ``steps=100``,
    ``restarts=1`` per target class. Needs at least 4 classes (the targeted DLR's denominator).
    """

    name = "apgd-t"
    tasks = ("classification",)  # its aims are the highest-scoring wrong classes of a classifier

    def __init__(self, threat: Threat, *, steps: int = 100, restarts: int = 1, n_target_classes: int = 9,
                 rho: float = 0.75, early_stop: bool = True, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, steps=steps, restarts=restarts, loss="dlr", rho=rho, early_stop=early_stop,
                         seed=seed, eot=eot)
        self.n_target_classes = check_positive_int("APGDT", "n_target_classes", n_target_classes)

    def aims(self, ctx: RunContext) -> Iterator[Tensor | None]:
        if ctx.target is not None:
            yield None
            return
        z = ctx.oracle.logits(ctx.x)
        if z.shape[1] < 4:
            raise InputError(f"APGDT needs at least 4 classes (targeted DLR), the model has {z.shape[1]}; use APGD")
        ranked = z.scatter(1, ctx.y[:, None], -math.inf).argsort(dim=1, descending=True)
        for rank in range(min(self.n_target_classes, z.shape[1] - 1)):
            yield ranked[:, rank]
