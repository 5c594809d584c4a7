"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016), "DeepFool: a simple and accurate method to
fool deep neural networks", multi-class, for l2 and l∞.

At the iterate ``x_i`` the classifier is linearized around the clean label ``y``: for each candidate
class ``k`` let ``f'_k = z_k(x_i) − z_y(x_i)`` and ``w'_k = ∇z_k(x_i) − ∇z_y(x_i)``. The nearest
linearized boundary is ``l = argmin_k |f'_k| / ‖w'_k‖_q`` (Algorithm 2 and §3.2; ``q`` the dual
norm: 2 for l2, 1 for l∞) and the step onto it is

    l2:  r_i = (|f'_l| + 1e-4) / ‖w'_l‖₂² · w'_l              (Algorithm 2, line 10)
    l∞:  r_i = (|f'_l| + 1e-4) / ‖w'_l‖₁ · sign(w'_l)           (§3.2, eq. 9 with p = ∞)

(the ``1e-4`` is the authors' code's, so a step is never zero). The total ``r̂ = Σ r_i`` is applied
with the overshoot: ``x_{i+1} = clip(x + (1 + η)·r̂)``, until the label changes (per point: a point
that has changed leaves the batch) or ``max_iter`` is reached.

Defaults are the paper's and its code's: ``overshoot η = 0.02``, ``max_iter = 50``, candidates
the ``10`` classes ranked highest at ``x`` (the label's excluded). Differences: iterates are clipped to
the box ``B`` (the paper ignores it); targeted use keeps one candidate, the target (DeepFool is
untargeted in the paper), and stops when the target wins.

The ``k − 1`` gradients per point come from one forward/backward pass of the batch repeated
``k − 1`` times (each row back-propagates its own logit difference), i.e. ``k − 1`` queries per point
and iteration.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advrobust.attacks.base import MinimumNormAttack
from advrobust.attacks.context import RunContext
from advrobust.errors import InputError
from advrobust.losses import is_adversarial
from advrobust.threat import Threat

_STEP_FLOOR = 1e-4  # added to |f'_l| in the step (the authors' code)
_TINY = 1e-12


class DeepFool(MinimumNormAttack):
    """DeepFool l2 / l∞ (Moosavi-Dezfooli et al. 2016, Algorithm 2).

    Parameters
    ----------
    threat:
        ``L2()`` (default) or ``Linf()``.
    overshoot:
        ``η`` in ``x + (1 + η)·r̂`` (0.02, paper).
    max_iter:
        Iterations per point (50, paper's code).
    candidates:
        How many of the highest-ranked classes at ``x`` (the label included) are considered (10, paper's
        code); fewer classes than that means all of them.
    """

    name = "deepfool"
    norms = ("l2", "linf")

    def __init__(self, threat: Threat | None = None, *, overshoot: float = 0.02, max_iter: int = 50,
                 candidates: int = 10, seed: int | None = 0) -> None:
        super().__init__(threat, seed=seed)
        if overshoot < 0 or max_iter < 1 or candidates < 2:
            raise InputError("DeepFool: overshoot must be >= 0, max_iter >= 1 and candidates >= 2")
        self.overshoot = overshoot
        self.max_iter = max_iter
        self.candidates = candidates

    def _run(self, ctx: RunContext) -> Tensor:
        oracle, x, y, target, done = ctx.oracle, ctx.x, ctx.y, ctx.target, ctx.done
        active = (~done).nonzero().squeeze(1)
        r_total = torch.zeros_like(x)
        if active.numel() == 0:
            return x.clone()
        if target is None:
            z0 = oracle.logits(x[active], active)
            k = min(self.candidates, z0.shape[1])
            ranked = z0.argsort(dim=1, descending=True)
            # the k − 1 best-ranked classes other than y (y is dropped wherever it ranks)
            others = ranked[ranked != y[active, None]].view(active.numel(), -1)[:, : k - 1]
            cand = torch.zeros(x.shape[0], k - 1, dtype=torch.long, device=x.device)
            cand[active] = others
        else:
            cand = target[:, None]
        m = cand.shape[1]
        x_adv = x.clone()
        for _ in range(self.max_iter):
            xa = x_adv[active]
            rows = active.repeat_interleave(m)
            cls = cand[active].reshape(-1)
            lab = y[rows]

            def objective(z: Tensor, cls: Tensor = cls, lab: Tensor = lab) -> Tensor:
                return z.gather(1, cls[:, None]).squeeze(1) - z.gather(1, lab[:, None]).squeeze(1)

            z, f, w = oracle.logits_and_grad(xa.repeat_interleave(m, dim=0), objective, rows)
            z_pt = z[::m]
            fooled = is_adversarial(z_pt, y[active], None if target is None else target[active])
            keep = ~fooled
            active = active[keep]
            if active.numel() == 0:
                break
            f = f.view(-1, m)[keep]
            w = w.view(-1, m, *x.shape[1:])[keep].flatten(2)
            r_total[active] += self._step(f, w).view(-1, *x.shape[1:])
            x_adv[active] = (x[active] + (1 + self.overshoot) * r_total[active]).clamp(0.0, 1.0)
        return x_adv

    def _step(self, f: Tensor, w: Tensor) -> Tensor:
        """The step onto the nearest linearized boundary, per point (``f``: N×m, ``w``: N×m×D)."""
        q = 1.0 if self.threat.name == "linf" else 2.0
        w_norm = w.norm(p=q, dim=2).clamp_min(_TINY)
        nearest = (f.abs() / w_norm).argmin(dim=1)
        pick = torch.arange(f.shape[0], device=f.device)
        f_l, w_l, n_l = f[pick, nearest].abs() + _STEP_FLOOR, w[pick, nearest], w_norm[pick, nearest]
        if q == 1.0:
            return (f_l / n_l)[:, None] * w_l.sign()
        return (f_l / n_l.square())[:, None] * w_l
