"""Robust accuracy against patches as an interval: ``[certified, attacked]`` for column smoothing.

    result = certify_and_attack_patches(ColumnSmoothing(base, band=4), x, y, sizes=[2, 5])
    result.certified   # per patch size: a lower bound (Levine & Feizi 2020, the vote's certificate)
    result.attacked    # per patch size: an upper bound (the occlusion attack found nothing)

**The threat.** A patch of size ``m`` is an ``m×m`` square of the image, anywhere, whose pixels the
adversary sets to any values in ``[0, 1]`` (the threat of Brown et al. 2017's patch and of Wu et al.
2020's rectangular occlusion). The size ``m`` (pixels per side) plays the role of eps: a larger
square contains every smaller one, so the accuracy under the patch falls as ``m`` grows.

Both bounds are on the same points, for the same smoothed classifier (the vote) and threat:

* **certified** at ``m``: the vote returns the label and its margin survives every ``m``-wide patch
  (:func:`~advrobust.defences.ablation.largest_certified_patch` ``≥ m``). The vote is computed
  exactly (every band position), so the certificate is deterministic: no failure probability.
* **attacked** at ``m``: the vote returns the label on the clean image and on what the rectangular
  occlusion attack (:class:`~advrobust.attacks.occlusion.ROA`, an ``m×m`` square) found. The attack
  differentiates the soft vote and sees the vote itself in its success checks
  (:class:`~advrobust.defences.ablation.SoftVote` with ``vote_forward``); what it finds is judged by
  :meth:`~advrobust.defences.ablation.ColumnSmoothing.predict`.

The certificate covers every patch at most ``m`` columns wide, the attack's squares among them, so a
certified point is never broken: ``certified ≤ attacked`` point by point, with no exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advrobust.attacks.base import Attack
from advrobust.attacks.occlusion import ROA
from advrobust.defences.ablation import ColumnSmoothing, PatchCertificate
from advrobust.defences.budgets import BoundsInterval, attack_increasing, row_means
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress


@dataclass(kw_only=True)
class PatchIntervalResult(BoundsInterval[PatchCertificate]):
    """:class:`~advrobust.defences.budgets.BoundsInterval` for column smoothing against ``m×m``
    patches, ``epsilons`` the sides ``m`` in pixels: the certificate is the vote's;
    ``broken[e, i]``: the attack flipped the vote with an ``m×m`` square; ``norm[i]``: the side of the
    smallest square that broke the point. ``queries_per_point``: the attack's queries on the vote,
    each ``W`` ablated images, then the judging vote."""

    def certified_points(self, y: Tensor) -> Tensor:
        """``E×N``: the points certified at each size (predicted correctly, certified that wide)."""
        return _certified_points(self.certificate, y, self.epsilons)

    def to_dict(self) -> dict[str, Any]:
        cert = self.certificate
        return {"threat": "patch", "band": cert.band, **super().to_dict(),
                "seconds_per_certified_point": cert.seconds / len(cert) if len(cert) else 0.0}


def _certified_points(cert: PatchCertificate, y: Tensor, sizes: list[float]) -> Tensor:
    side = torch.tensor(sizes, dtype=torch.float64, device=cert.largest_patch.device)
    correct = (cert.prediction == y.to(cert.prediction.device)).unsqueeze(0)
    return correct & (cert.largest_patch.double().unsqueeze(0) >= side.unsqueeze(1))


def default_patch_attack(size: int) -> Attack:
    """The rectangular occlusion attack with an ``size×size`` square (its fast preset)."""
    return ROA(size=size)


def check_sizes(sizes: Sequence[float]) -> list[float]:
    """Patch sides, sorted and deduplicated: whole numbers ``>= 0`` (0: no patch, the clean accuracy)."""
    try:
        out = sorted({float(m) for m in sizes})
    except (TypeError, ValueError):
        raise InputError(f"patch sizes must be numbers of pixels per side, e.g. [2, 5]; got {sizes!r}") from None
    if not out or any(not (math.isfinite(m) and m >= 0 and m == int(m)) for m in out):
        raise InputError(f"patch sizes must be whole numbers of pixels per side >= 0, e.g. [2, 5]; got {list(sizes)!r}")
    return out


def certify_and_attack_patches(
    smoothed: ColumnSmoothing,
    x: Tensor,
    y: Tensor,
    sizes: Sequence[float],
    *,
    attack: Callable[[int], Attack] = default_patch_attack,
    progress: Progress = SILENT,
) -> PatchIntervalResult:
    """Certified and attacked accuracy of the vote of ``smoothed`` on ``(x, y)`` against ``m×m``
    patches, for each ``m`` in ``sizes``. ``attack(m)`` builds the attack of size ``m`` (default: ROA).
    The attack runs at each size in increasing order on the points not yet broken (a square that
    breaks a point lies inside every larger one)."""
    eps = check_sizes(sizes)
    y = torch.as_tensor(y, device=x.device).long()
    if y.shape != (x.shape[0],):
        raise InputError(f"y must hold one label per input: shape ({x.shape[0]},), got {tuple(y.shape)}")
    size = smoothed.size(x)
    if eps[-1] > min(x.shape[2], x.shape[3]):
        raise InputError(f"a {int(eps[-1])}×{int(eps[-1])} patch does not fit {x.shape[2]}×{x.shape[3]} images")
    cert = smoothed.certify(x, patch=max(1, int(eps[0])), progress=progress)
    correct = cert.prediction == y
    model = smoothed.soft(vote_forward=True)
    m = x.shape[0]
    norm = torch.full((m,), math.inf, dtype=torch.float64, device=x.device)
    queries, described = 0, "nothing attacked"

    def attack_at(e: int, side: float, todo: Tensor) -> Tensor:
        nonlocal queries, described
        run = attack(int(side))
        described = repr(run)
        res = run(model, x[todo], y[todo])
        queries += int(res.queries.sum())
        fresh = smoothed.predict(res.x_adv) != y[todo]
        norm[todo[fresh]] = side
        return fresh

    start = time.perf_counter()
    broken, attacked_points = attack_increasing(eps, correct, attack_at, progress, "attack (vote)")
    robust = correct.unsqueeze(0) & ~broken
    return PatchIntervalResult(
        epsilons=eps,
        certified=row_means(_certified_points(cert, y, eps)),
        attacked=row_means(robust),
        clean_accuracy=float(correct.float().mean()) if m else 0.0,
        certificate=cert,
        broken=broken,
        norm=norm,
        attacked_points=attacked_points,
        queries_per_point=round(queries * size / max(sum(attacked_points), 1)) + size,
        attack=f"{described} (at the largest size) on the vote: soft-vote gradient, the vote in the forward pass; "
        "judged by the vote",
        seconds={"certify": cert.seconds, "attack": time.perf_counter() - start},
    )
