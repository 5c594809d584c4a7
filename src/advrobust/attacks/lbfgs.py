"""Box-constrained L-BFGS (Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow & Fergus 2014,
"Intriguing properties of neural networks", §4.1), the first adversarial attack of the seed.

Per point, for a constant ``c > 0``, minimize over ``x + r ∈ B = [0, 1]``

    c · ‖r‖₂² + L(θ, x + r, y_t)                                            (seed, "Box-constrained L-BFGS")

with SciPy's L-BFGS-B (``scipy.optimize.minimize(method="L-BFGS-B")``, the box as its bounds). We
penalize ``‖r‖₂²`` rather than the paper's ``‖r‖₂``: the square is smooth at ``r = 0``, where the
search starts (``‖r‖₂`` has no gradient there), and it has the same minimizers along the search over
``c``. The whole batch is ONE SciPy problem, the sum of the per-point objectives, whose gradient
comes from one batched torch forward/backward (one query per point and evaluation).

``L`` is the cross-entropy: targeted ``CE(z, y_t)`` (paper); untargeted, a documented choice,
``−log(1 − p_y) = −log Σ_{j≠y} softmax(z)_j``, the cross-entropy toward "any class but ``y``".

The search over ``c`` is per point: a success means ``r`` may shrink further, so ``c`` grows
(×10 until a failure brackets it), a failure makes it shrink (÷10 until a success); once bracketed,
``c`` bisects geometrically. The paper asks for "the minimum c" with ``c`` weighting ``‖r‖``; the
smallest successful ``r`` comes from the *largest* ``c`` that still succeeds, which is what this
search approaches. The smallest successful ``x + r`` of all searches is kept per point.

The paper gives no numbers; ours: ``c₀ = 1``, 10 search steps, 100 L-BFGS-B iterations per search.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import Bounds, minimize
from torch import Tensor

from advrobust.attacks.base import MinimumNormAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.minimal import SmallestAdversarial
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError
from advrobust.losses import is_adversarial
from advrobust.threat import Threat


def szegedy_loss(z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """``L`` to *minimize*: ``CE(z, y_t)``; untargeted ``−log Σ_{j≠y} softmax(z)_j``."""
    if target is not None:
        return torch.nn.functional.cross_entropy(z, target, reduction="none")
    others = z.scatter(1, y[:, None], -math.inf)
    return torch.logsumexp(z, dim=1) - torch.logsumexp(others, dim=1)


class LBFGS(MinimumNormAttack):
    """Box-constrained L-BFGS-B (Szegedy et al. 2014), minimum l2, with a per-point search over ``c``.

    Parameters
    ----------
    threat:
        ``L2()`` (the default).
    initial_const:
        ``c`` of the first search step (1.0; the paper gives none).
    search_steps:
        Steps of the per-point search over ``c`` (10).
    max_iter:
        L-BFGS-B iterations per search step (100).
    """

    name = "lbfgs"
    norms = ("l2",)

    def __init__(self, threat: Threat | None = None, *, initial_const: float = 1.0, search_steps: int = 10,
                 max_iter: int = 100, seed: int | None = 0) -> None:
        super().__init__(threat, seed=seed)
        if initial_const <= 0 or search_steps < 1 or max_iter < 1:
            raise InputError("LBFGS: initial_const must be > 0, search_steps and max_iter >= 1")
        self.initial_const = initial_const
        self.search_steps = search_steps
        self.max_iter = max_iter

    def _run(self, ctx: RunContext) -> Tensor:
        best, index = SmallestAdversarial.start(ctx, self.threat)
        if index.numel() == 0:
            return best.x_best
        oracle, x, y, tt = ctx.oracle, ctx.x, ctx.y, ctx.target_of(index)
        const = torch.full((index.numel(),), self.initial_const, dtype=torch.float64, device=x.device)
        lower = torch.zeros_like(const)  # largest c that succeeded (0: none yet)
        upper = torch.full_like(const, math.inf)  # smallest c that failed
        for _ in range(self.search_steps):
            xa = self._minimize(oracle, x[index], y[index], tt, index, const)
            success = is_adversarial(oracle.logits(xa, index), y[index], tt)
            best.offer(index, xa, success)
            lower = torch.where(success, torch.maximum(lower, const), lower)
            upper = torch.where(success, upper, torch.minimum(upper, const))
            bracketed = (lower > 0) & torch.isfinite(upper)
            const = torch.where(
                bracketed, (lower * upper).sqrt(), torch.where(success, const * 10, const / 10)
            )
        return best.x_best

    def _minimize(
        self, oracle: Oracle, x0: Tensor, y: Tensor, target: Tensor | None, index: Tensor, const: Tensor
    ) -> Tensor:
        """One L-BFGS-B run on ``Σ_i c_i·‖r_i‖₂² + L_i`` over the batch; returns ``x + r``."""
        shape, dtype = x0.shape, x0.dtype
        origin = x0.double().flatten().cpu().numpy()
        c = const.cpu().numpy().repeat(origin.size // shape[0])

        def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
            xa = torch.from_numpy(v).to(device=x0.device, dtype=dtype).view(shape)
            _, loss, grad = oracle.logits_and_grad(xa, lambda z: szegedy_loss(z, y, target), index)
            r = v - origin
            value = float((c * r * r).sum()) + float(loss.double().sum())
            return value, 2 * c * r + grad.double().flatten().cpu().numpy()

        out = minimize(
            fun, origin.copy(), jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 1.0), options={"maxiter": self.max_iter}
        )
        return torch.from_numpy(out.x).to(device=x0.device, dtype=dtype).view(shape).clamp(0.0, 1.0)
