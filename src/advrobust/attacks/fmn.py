"""FMN, the Fast Minimum-Norm attack (Pintor, Roli, Brendel & Biggio 2021, "Fast Minimum-norm
Adversarial Attacks through Adaptive Norm Constraints", NeurIPS), for l0, l1, l2 and l∞.

FMN alternates two steps per iteration ``k`` (their Algorithm 1), with the logit difference
``L(x_k) = z_y − max_{j≠y} z_j`` (targeted: ``max_{j≠t} z_j − z_t``; adversarial iff ``< 0``):

* **ε-step** (their eq. 6-7): if ``x_k`` is adversarial, shrink the ball,
  ``ε_k = min(ε_{k−1}·(1 − γ_k), ‖r*‖_p)`` with ``r*`` the smallest adversarial so far; otherwise
  grow it, ``ε_k = ε_{k−1}·(1 + γ_k)`` once an adversarial has been seen, and before that jump to the
  linearized boundary, ``ε_k = ‖r_k‖_p + |L(x_k)| / ‖∇L(x_k)‖_q`` (``q`` the dual norm). For l0 the ball
  counts pixels: ``ε`` moves by at least one pixel, ``⌊ε(1 ± γ)⌋`` (their code).
  One deviation: before the first adversarial we take the larger of the boundary estimate and
  ``ε_{k−1}·(1 + γ_k)``, so ε keeps growing; with the estimate alone an iterate that lands exactly on
  a (locally linear) boundary, where ``L = 0`` but the label has not flipped, never leaves it.
* **δ-step** (their eq. 8-9): a normalized gradient step ``x_k − α_k·∇L/‖∇L‖₂``, projected onto
  ``{‖r‖_p ≤ ε_k} ∩ B`` (:meth:`advrobust.threat.Threat.project` with a per-point ``ε``).

``α_k`` and ``γ_k`` follow cosine annealing, ``α_k = α_K + (α_0 − α_K)(1 + cos(πk/K))/2``.
Defaults: ``α_0 = 1``, ``α_K = α_0/100``, ``γ_0 = 0.05``, ``γ_K = 0.001`` (paper and authors' code, for
every norm); ``steps = 100`` — the authors' code defaults to 10 and the paper's experiments run 1000;
100 is a documented middle that converges on small CNNs (see benchmarks/bench_minimum_norm.py).
The smallest adversarial of any iterate is kept per point (their ``r*``). FMN never stops a point
early: it keeps shrinking ``ε`` until the last step (the attack's design), so every point costs
``steps`` queries.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from advrobust.attacks.base import MinimumNormAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.minimal import SmallestAdversarial
from advrobust.errors import InputError
from advrobust.losses import is_adversarial, margin
from advrobust.threat import L2, Threat

_TINY = 1e-12
_DUAL = {"linf": 1.0, "l2": 2.0, "l1": math.inf}


def _cosine(start: float, end: float, k: int, steps: int) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * k / steps)) / 2


class FMN(MinimumNormAttack):
    """Fast Minimum-Norm attack (Pintor et al. 2021, Algorithm 1) for l0, l1, l2, l∞.

    Parameters
    ----------
    threat:
        ``L2()`` (default), ``Linf()``, ``L1()`` or ``L0()``.
    steps:
        Iterations ``K`` (100; authors' code 10, paper's experiments 1000).
    alpha_init, alpha_final:
        Step size ``α_0`` (1.0) and ``α_K`` (``None``: ``α_0 / 100``), authors' code.
    gamma_init, gamma_final:
        ε-step factor ``γ_0`` (0.05) and ``γ_K`` (0.001), paper and authors' code.
    """

    name = "fmn"
    norms = ("l0", "l1", "l2", "linf")

    def __init__(self, threat: Threat | None = None, *, steps: int = 100, alpha_init: float = 1.0,
                 alpha_final: float | None = None, gamma_init: float = 0.05, gamma_final: float = 0.001,
                 seed: int | None = 0) -> None:
        super().__init__(threat, seed=seed)
        if steps < 1 or alpha_init <= 0 or not 0 < gamma_final <= gamma_init < 1:
            raise InputError("FMN: steps >= 1, alpha_init > 0 and 0 < gamma_final <= gamma_init < 1 are required")
        self.steps = steps
        self.alpha_init = alpha_init
        self.gamma_init = gamma_init
        self.gamma_final = gamma_final
        self.alpha_final = alpha_init / 100 if alpha_final is None else alpha_final

    def _run(self, ctx: RunContext) -> Tensor:
        """Algorithm 1 of Pintor et al. 2021 on every point not yet adversarial, all ``steps`` of it."""
        best, index = SmallestAdversarial.start(ctx, self.threat)
        if index.numel() == 0:
            return best.x_best
        oracle, x = ctx.oracle, ctx.x
        x0, yy, tt = x[index], ctx.y[index], ctx.target_of(index)
        l0 = self.threat.name == "l0"
        eps = torch.full((index.numel(),), 1.0 if l0 else 0.0, dtype=x.dtype, device=x.device)
        worst = self.threat.norm(torch.maximum(x0, 1 - x0))  # the largest norm the box allows
        seen = torch.zeros(index.numel(), dtype=torch.bool, device=x.device)
        xa = x0.clone()
        for k in range(self.steps):
            alpha = _cosine(self.alpha_init, self.alpha_final, k, self.steps)
            gamma = _cosine(self.gamma_init, self.gamma_final, k, self.steps)
            # margin = −L: ascending it is descending the logit difference of the paper
            z, m, grad = oracle.logits_and_grad(xa, lambda z: margin(z, yy, tt), index)
            adv = is_adversarial(z, yy, tt)
            best.offer(index, xa, adv)
            seen |= adv
            eps = self._eps_step(eps, adv, seen, best.norm[index], xa - x0, m, grad, gamma).clamp(min=0)
            eps = torch.minimum(eps, worst)
            xa = self.threat.project(xa + alpha * L2().ascent_direction(grad), x0, eps)
        z = oracle.logits(xa, index)
        best.offer(index, xa, is_adversarial(z, yy, tt))
        return best.x_best

    def _eps_step(
        self,
        eps: Tensor,
        adv: Tensor,
        seen: Tensor,
        best_norm: Tensor,
        r: Tensor,
        m: Tensor,
        grad: Tensor,
        gamma: float,
    ) -> Tensor:
        """The ε-step of FMN (eq. 6-7; l0: whole pixels)."""
        if self.threat.name == "l0":
            shrink = torch.minimum(torch.minimum(eps - 1, (eps * (1 - gamma)).floor()), best_norm)
            return torch.where(adv, shrink, torch.maximum(eps + 1, (eps * (1 + gamma)).floor()))
        to_boundary = m.abs() / grad.flatten(1).norm(p=_DUAL[self.threat.name], dim=1).clamp_min(_TINY)
        grow = eps * (1 + gamma)
        grow = torch.where(seen, grow, torch.maximum(grow, self.threat.norm(r) + to_boundary))
        return torch.where(adv, torch.minimum(eps * (1 - gamma), best_norm), grow)
