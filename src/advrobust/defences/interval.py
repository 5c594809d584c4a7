"""Robust accuracy as an interval: ``[certified, attacked]`` for a randomized-smoothing classifier.

    result = certify_and_attack(GaussianSmoothing(model, sigma=0.25), x, y, epsilons=[0.5, 1.0])
    result.certified   # per eps: a lower bound (Cohen et al. 2019, CERTIFY)
    result.attacked    # per eps: an upper bound (the best attack found nothing for these points)

Both bounds are on the same points, for the same smoothed classifier ``g`` and the l2 threat:

* **certified** at ``ε``: ``CERTIFY`` returned the label with a radius ``≥ ε`` (abstentions count as
  errors). With probability ``≥ 1 − α`` per point, ``g`` is correct on the whole ball.
* **attacked** at ``ε``: the point is counted correct by ``CERTIFY`` (the same clean pass, so the two
  bounds share their clean accuracy) and no attack found an ``x'`` in the ball on which ``PREDICT``
  confidently returns another class. The default attack is l2 PGD on the soft smoothed classifier
  (:class:`~advrobust.defences.smoothing.SoftSmoothed`; Salman et al. 2019, §3.1), a randomized model
  with ``draws`` fresh noise draws per pass, its gradient averaged over ``eot`` passes by the shared
  EOT runner (:mod:`advrobust.runtime.eot`); what it finds is judged on ``g`` with fresh noise.

**Abstentions.** Cohen et al. count an abstention as an error in certified accuracy (a point
``CERTIFY`` cannot decide is not certified), and so does the clean pass here. On an attacked input,
an abstention of ``PREDICT`` says only that the top two classes were too close to tell apart with
``n`` samples: ``g`` may still return the label. ``attacked`` therefore does not count it as a break:
it bounds the robust accuracy of ``g``, the classifier the certificate is about. Counting it as a
break bounds another quantity — the robust accuracy of ``PREDICT`` as deployed, abstaining counted
wrong — which the certificate does not bound from below: a point certified at radius ``R ≥ ε`` has
``p_A(x') ≥ Φ(Φ⁻¹(p̲_A) − ε/σ)``, as low as 1/2 on the edge of the ball, where ``PREDICT`` abstains.
That stricter number is reported beside it, ``attacked_abstain_as_error`` (``≤ attacked``): the
conservative figure for a deployed classifier that abstains.

A certified point can be counted broken only if ``CERTIFY`` or ``PREDICT`` erred (each with
probability ``≤ α``), so ``certified ≤ attacked`` at every ``ε``, point by point, but for those
events; a gap between the two is the part of the robustness neither side could settle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advrobust.attacks.base import Attack
from advrobust.attacks.gradient import PGD
from advrobust.defences.budgets import BoundsInterval, attack_increasing, row_means
from advrobust.defences.smoothing import ABSTAIN, Certificate, GaussianSmoothing, certified_accuracy
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.threat import L2

#: PGD steps of the default attack on the smoothed classifier (a fast preset; Salman et al. use 1–10
#: steps inside training and more for evaluation)
ATTACK_STEPS = 20
#: noise draws inside one pass of the soft smoothed classifier, and passes averaged by EOT per step:
#: 8 × 4 = 32 noisy samples per step and point
ATTACK_DRAWS, ATTACK_EOT = 8, 4


@dataclass(kw_only=True)
class IntervalResult(BoundsInterval[Certificate]):
    """:class:`~advrobust.defences.budgets.BoundsInterval` for randomized smoothing at l2 radii
    ``epsilons``: the certificate is ``CERTIFY``'s (``prediction`` is :data:`~advrobust.defences.
    smoothing.ABSTAIN` where it abstained); ``broken[e, i]``: an attack found a confidently
    misclassified input in the ball; ``abstained[e, i]``: not broken, but ``PREDICT`` abstained on an
    attack's input in the ball; ``norm[i]``: the l2 norm of the first misclassified input found.
    ``attacked_abstain_as_error[e]``: the accuracy left when abstentions count as breaks too (the
    deployed ``PREDICT``'s view; see the module docstring). ``queries_per_point``: the attack's noisy
    passes, then ``PREDICT``'s ``n``."""

    attacked_abstain_as_error: list[float]
    abstained: Tensor

    def certified_points(self, y: Tensor) -> Tensor:
        """``E×N``: the points certified at each eps (``CERTIFY`` returned the label, radius ``≥ eps``)."""
        cert = self.certificate
        eps = torch.tensor(self.epsilons, dtype=cert.radius.dtype, device=cert.radius.device)
        correct = (cert.prediction == y.to(cert.prediction.device)).unsqueeze(0)
        return correct & (cert.radius.unsqueeze(0) >= eps.unsqueeze(1))

    def rows(self) -> list[dict[str, float]]:
        """One row per eps: ``eps``, ``certified``, ``attacked``, their ``gap`` and
        ``attacked_abstain_as_error``."""
        return [{**row, "attacked_abstain_as_error": d}
                for row, d in zip(super().rows(), self.attacked_abstain_as_error, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        cert = self.certificate
        return {"threat": "l2", "sigma": cert.sigma, "alpha": cert.alpha, "n0": cert.n0, "n": cert.n,
                **super().to_dict(), "seconds_per_certified_point": cert.seconds_per_point}


def default_attack(eps: float, steps: int = ATTACK_STEPS, eot: int = ATTACK_EOT) -> Attack:
    """l2 PGD, cross-entropy, ``eot`` passes per step, no early stop (it keeps pushing past the soft
    classifier's boundary, so that fresh noise does not undo the success)."""
    return PGD(L2(eps=eps), steps=steps, early_stop=False, seed=0, eot=eot)


def certify_and_attack(
    smoothed: GaussianSmoothing,
    x: Tensor,
    y: Tensor,
    epsilons: Sequence[float],
    *,
    n0: int | None = None,
    n: int | None = None,
    alpha: float | None = None,
    draws: int = ATTACK_DRAWS,
    eot: int = ATTACK_EOT,
    steps: int = ATTACK_STEPS,
    seed: int = 0,
    progress: Progress = SILENT,
) -> IntervalResult:
    """Certified and attacked robust accuracy of ``smoothed`` on ``(x, y)`` at each l2 ``eps``.

    ``n0``, ``n``, ``alpha``: ``CERTIFY``'s, ``smoothed``'s unless given (``PREDICT`` on the attacked
    inputs uses ``n`` and ``alpha`` too); ``draws``: fresh noise draws inside one pass of the soft
    classifier the attack differentiates; ``eot``: passes each gradient averages (the attack's
    ``eot``); ``steps``: PGD steps. The attack runs at each eps in increasing order on the points not
    yet broken (a break at a smaller eps holds at every larger one).
    """
    eps = sorted({float(e) for e in epsilons})
    if not eps or any(not (math.isfinite(e) and e >= 0) for e in eps):
        raise InputError(f"epsilons must be finite l2 budgets >= 0, got {list(epsilons)!r}")
    y = torch.as_tensor(y, device=x.device).long()
    if y.shape != (x.shape[0],):
        raise InputError(f"y must hold one label per input: shape ({x.shape[0]},), got {tuple(y.shape)}")
    n0, n = smoothed.n0 if n0 is None else n0, smoothed.n if n is None else n
    alpha = smoothed.alpha if alpha is None else alpha
    start = time.perf_counter()
    cert = smoothed.certify(x, n0=n0, n=n, alpha=alpha, seed=seed, progress=progress)
    certify_seconds = time.perf_counter() - start
    correct = cert.prediction == y
    soft = smoothed.soft(draws=draws, seed=seed)
    m = x.shape[0]
    abstained_at = torch.zeros(len(eps), m, dtype=torch.bool, device=x.device)
    norm = torch.full((m,), math.inf, dtype=torch.float64, device=x.device)

    def attack(e: int, budget: float, todo: Tensor) -> Tensor:
        x_adv = default_attack(budget, steps, eot)(soft, x[todo], y[todo]).x_adv
        label = smoothed.predict(x_adv, n=n, alpha=alpha, seed=seed + 1 + e)
        fresh = (label != ABSTAIN) & (label != y[todo])
        abstained_at[e, todo] = label == ABSTAIN
        norm[todo[fresh]] = (x_adv[fresh] - x[todo[fresh]]).flatten(1).norm(dim=1).double()
        return fresh

    start = time.perf_counter()
    broken, attacked_points = attack_increasing(eps, correct, attack, progress, "attack (smoothed)")
    # an abstention within a smaller ball is one within every larger ball
    abstained = abstained_at.int().cummax(dim=0).values.bool() & ~broken
    robust = correct.unsqueeze(0) & ~broken
    return IntervalResult(
        epsilons=eps,
        certified=certified_accuracy(cert, y, eps),
        attacked=row_means(robust),
        attacked_abstain_as_error=row_means(robust & ~abstained),
        clean_accuracy=float(correct.float().mean()) if m else 0.0,
        certificate=cert,
        broken=broken,
        abstained=abstained,
        norm=norm,
        attacked_points=attacked_points,
        queries_per_point=(steps + 1) * draws * eot + n,
        attack=f"l2 PGD ({steps} steps, CE, no early stop, eot={eot}) on the soft smoothed classifier over {draws} "
        f"fresh noise draws per pass; judged by PREDICT (n={n}, alpha={alpha}) with fresh noise",
        seconds={"certify": certify_seconds, "attack": time.perf_counter() - start},
    )
