"""JSMA, the Jacobian-based Saliency Map Attack (Papernot, McDaniel, Jha, Fredrikson, Celik & Swami
2016, "The Limitations of Deep Learning in Adversarial Settings"), l0, targeted.

At each iteration the forward derivative gives, for every feature ``i`` still in the search domain
``Γ``, ``α_i = ∂Z_t/∂x_i`` and ``β_i = Σ_{j≠t} ∂Z_j/∂x_i``. Over *pairs* ``(p, q)`` of features of
``Γ`` (their Algorithm 3, saliency map of eq. 10 for pairs) the attack picks

    argmax_{p≠q}  (α_p + α_q) · |β_p + β_q|    subject to  θ·(α_p + α_q) > 0,  θ·(β_p + β_q) < 0

and moves both features by ``θ`` (clipped to ``[0, 1]``), then removes them from ``Γ``; it stops when
the model outputs ``t``, when no pair meets the sign conditions, or when ``⌊γ·D/2⌋`` pairs have been
changed (``D`` the number of features: at most ``γ·D`` features, hence at most ``γ·D`` pixels).
Defaults are the paper's: ``θ = +1`` (features are increased to 1; ``Γ`` starts as the features below
1), ``γ = 0.1`` (at most 10% of the features). Like the JSMA-Z variant that Carlini & Wagner (2017)
evaluate, the derivatives are those of the logits ``Z`` (the paper uses the softmax output ``F``,
whose saturation hides gradients).

Untargeted use (a documented choice): the attack is run toward the ``untargeted_classes`` classes
ranked highest at ``x`` after the label (default 1, the runner-up) and the result with the fewest
changed pixels is kept; success is then any label other than ``y``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advrobust.attacks.base import MinimumNormAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.minimal import SmallestAdversarial
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError
from advrobust.losses import is_adversarial
from advrobust.threat import L0, Threat

_PAIR_ELEMENTS = 2**24  # pair-score entries computed at once (points × D × D), bounds the memory


class JSMA(MinimumNormAttack):
    """JSMA over pixel pairs (Papernot et al. 2016, Algorithm 3).

    Parameters
    ----------
    threat:
        ``L0()`` (the default), unbounded; with an eps, results changing more features count as failures.
    theta:
        Change applied to each chosen feature, ``+1`` (paper: increase) or ``−1`` (decrease).
    gamma:
        Largest fraction of the features that may change (0.1, paper).
    untargeted_classes:
        Without targets: how many of the best-ranked other classes are tried (1).
    """

    name = "jsma"
    norms = ("l0",)
    default_threat = L0

    def __init__(self, threat: Threat | None = None, *, theta: float = 1.0, gamma: float = 0.1,
                 untargeted_classes: int = 1, seed: int | None = 0) -> None:
        super().__init__(threat, seed=seed)
        if theta == 0 or not -1 <= theta <= 1:
            raise InputError(f"JSMA: theta must be a nonzero change in [-1, 1], got {theta!r}")
        if not 0 < gamma <= 1 or untargeted_classes < 1:
            raise InputError("JSMA: gamma must be in (0, 1] and untargeted_classes >= 1")
        self.theta = theta
        self.gamma = gamma
        self.untargeted_classes = untargeted_classes

    def max_pairs(self, features: int) -> int:
        """How many feature pairs may change for inputs of ``features`` features (``⌊γ·D/2⌋``)."""
        return int(self.gamma * features) // 2

    def _run(self, ctx: RunContext) -> Tensor:
        oracle, x, y, target = ctx.oracle, ctx.x, ctx.y, ctx.target
        best, index = SmallestAdversarial.start(ctx, self.threat)
        if self.max_pairs(x[0].numel()) < 1:
            raise InputError(f"JSMA: gamma={self.gamma} allows no feature pair on inputs of {x[0].numel()} features")
        if index.numel() == 0:
            return best.x_best
        if target is not None:
            self._toward(oracle, x, y, target, target, index, best)
            return best.x_best
        z0 = oracle.logits(x[index], index)
        ranked = z0.argsort(dim=1, descending=True)
        others = ranked[ranked != y[index, None]].view(index.numel(), -1)
        aims = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        for rank in range(min(self.untargeted_classes, others.shape[1])):
            aims[index] = others[:, rank]
            self._toward(oracle, x, y, None, aims, index, best)
        return best.x_best

    def _toward(
        self,
        oracle: Oracle,
        x: Tensor,
        y: Tensor,
        goal: Tensor | None,
        aim: Tensor,
        index: Tensor,
        best: SmallestAdversarial,
    ) -> None:
        """Push the points ``index`` toward class ``aim``; success means ``goal`` (None: any label ≠ y)."""
        xa = x[index].clone()
        flat = xa.view(index.numel(), -1)
        domain = flat < 1 if self.theta > 0 else flat > 0
        rows = torch.arange(index.numel(), device=x.device)  # active rows of xa
        budget = self.max_pairs(flat.shape[1])
        for changed in range(budget + 1):  # evaluate after each pair, and once more after the last
            pts = index[rows]
            t2 = aim[pts].repeat_interleave(2)

            def objective(z: Tensor, t: Tensor = t2) -> Tensor:
                z_t = z.gather(1, t[:, None]).squeeze(1)
                odd = torch.arange(z.shape[0], device=z.device) % 2 == 1
                return torch.where(odd, z.sum(dim=1) - z_t, z_t)  # rows: Z_t, then Σ_{j≠t} Z_j

            z, _, g = oracle.logits_and_grad(xa[rows].repeat_interleave(2, dim=0), objective, pts.repeat_interleave(2))
            adv = is_adversarial(z[::2], y[pts], None if goal is None else goal[pts])
            best.offer(pts, xa[rows], adv)
            g = g.flatten(1)
            pair = self._best_pairs(g[0::2], g[1::2], domain[rows])
            moving = ~adv & (pair[:, 0] >= 0)
            if changed == budget or not bool(moving.any()):
                break
            rows, pair = rows[moving], pair[moving]
            for col in (0, 1):
                f = pair[:, col]
                flat[rows, f] = (flat[rows, f] + self.theta).clamp(0.0, 1.0)
                domain[rows, f] = False

    def _best_pairs(self, alpha: Tensor, beta: Tensor, domain: Tensor) -> Tensor:
        """Per point the pair ``(p, q)`` of largest saliency meeting the sign conditions; ``(−1, −1)`` if none."""
        n, d = alpha.shape
        out = torch.full((n, 2), -1, dtype=torch.long, device=alpha.device)
        chunk = max(1, _PAIR_ELEMENTS // (d * d))
        s = 1.0 if self.theta > 0 else -1.0
        not_self = ~torch.eye(d, dtype=torch.bool, device=alpha.device)
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            a = alpha[sl, :, None] + alpha[sl, None, :]
            b = beta[sl, :, None] + beta[sl, None, :]
            ok = (s * a > 0) & (s * b < 0) & domain[sl, :, None] & domain[sl, None, :] & not_self
            score = torch.where(ok, -a * b, torch.full_like(a, -1.0)).flatten(1)
            top, flat_idx = score.max(dim=1)
            found = top > 0
            out[sl] = torch.where(found[:, None], torch.stack([flat_idx // d, flat_idx % d], dim=1), out[sl])
        return out
