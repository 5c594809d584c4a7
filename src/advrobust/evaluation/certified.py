"""``advrobust.evaluate`` on a smoothed classifier: robust accuracy as an interval per eps.

    result = ar.evaluate(GaussianSmoothing(model, sigma=0.25), x, y, threat=ar.L2(), epsilons=[0.5, 1.0])
    result = ar.evaluate(ColumnSmoothing(ablated, band=4), x, y, epsilons=[2, 5])   # m×m patches
    result.certified_accuracy    # {eps: lower bound}   (the certificate)
    result.robust_accuracy       # {eps: upper bound}   (an attack on the smoothed classifier)

* :class:`~advrobust.defences.GaussianSmoothing`: the l2 threat, eps the radius; the bounds of
  :func:`advrobust.defences.certify_and_attack` (Cohen et al. 2019; l2 PGD with EOT on the soft
  smoothed classifier).
* :class:`~advrobust.defences.ColumnSmoothing`: the ``patch`` threat, eps the side ``m`` of an
  ``m×m`` square anywhere in the image with any content; the bounds of
  :func:`advrobust.defences.certify_and_attack_patches` (Levine & Feizi 2020; the rectangular
  occlusion attack on the vote). ``min_norm`` is then the side of the smallest square that broke
  the point.

The result is an ordinary :class:`~advrobust.evaluation.result.EvaluationResult` (so the table, the
report and the results store take it) with its ``certified`` and ``certification`` filled in. The
clean pass is the certificate's own: a point counts as clean-correct when the certified prediction is
its label (abstentions are errors), so both bounds share the clean accuracy.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.evaluation.result import AttackRecord, EvaluationResult
from advrobust.progress import SILENT, Progress
from advrobust.threat import Threat

#: what ``broken_by`` names for the points the attack on the smoothed classifier broke, per threat
ATTACK_NAMES = {"l2": "pgd-smoothed", "patch": "roa-vote"}
#: the eps evaluated when none is given: l2 radii, patch sides
DEFAULT_EPSILONS = {"l2": [0.5, 1.0, 1.5], "patch": [1.0, 2.0, 3.0, 4.0, 5.0]}


def _budgets(kind: str, threat: Threat | None, epsilons: list[float] | float | None) -> list[float]:
    """The eps to evaluate, checked against what the smoothing certifies."""
    if kind == "patch":
        if threat is not None:
            raise InputError(f"column smoothing certifies m×m patches, not {threat.name} balls: pass threat=None and "
                             "the patch sides as epsilons (e.g. epsilons=[2, 5])")
    elif threat is not None and threat.name != "l2":
        raise InputError(f"randomized smoothing certifies l2 radii: evaluate it with threat=ar.L2(), not {threat.name}")
    if epsilons is None:
        epsilons = [threat.eps] if threat is not None and threat.eps is not None else DEFAULT_EPSILONS[kind]
    return sorted({float(e) for e in ([epsilons] if isinstance(epsilons, (int, float)) else epsilons)})


def _interval(smoothed: Any, kind: str, x: Tensor, y: Tensor, eps: list[float], seed: int, progress: Progress) -> Any:
    if kind == "patch":
        from advrobust.defences.patch_interval import certify_and_attack_patches

        return certify_and_attack_patches(smoothed, x, y, eps, progress=progress)
    from advrobust.defences.interval import certify_and_attack

    return certify_and_attack(smoothed, x, y, eps, seed=seed, progress=progress)


def _default_name(smoothed: Any, kind: str) -> str:
    base = type(smoothed.base).__name__
    if kind == "patch":
        return f"{base} column-smoothed (band {smoothed.band})"
    return f"{base} smoothed (σ={smoothed.sigma:g})"


def evaluate_smoothed(
    smoothed: Any,
    x: Tensor,
    y: Tensor,
    *,
    threat: Threat | None,
    epsilons: list[float] | float | None,
    model_fingerprint: str,
    versions: dict[str, str],
    progress: Progress = SILENT,
    classes: list[str] | None = None,
    model_name: str | None = None,
    data_name: str | None = None,
    seed: int = 0,
) -> EvaluationResult:
    """The interval evaluation (see the module docstring) of a smoothed classifier whose
    ``certifies`` says its threat: ``"l2"`` (default eps 0.5, 1.0, 1.5) or ``"patch"`` (default
    sides 1–5)."""
    kind = smoothed.certifies
    eps = _budgets(kind, threat, epsilons)
    started = time.perf_counter()
    interval = _interval(smoothed, kind, x, y, eps, seed, progress)
    attack_name = ATTACK_NAMES[kind]
    correct = (interval.prediction == y).cpu()
    robust = correct.unsqueeze(0) & ~interval.broken.cpu()
    certified = interval.certified_points(y).cpu()
    broken_by: list[list[str | None]] = [
        [attack_name if bool(b) else None for b in row] for row in interval.broken.cpu()
    ]
    min_norm = torch.where(correct, interval.norm.float().cpu(), torch.zeros(len(correct)))
    seconds = interval.seconds["attack"] / max(len(eps), 1)
    broken = interval.broken.cpu()
    earlier = torch.cat([torch.zeros_like(broken[:1]), broken[:-1]])  # broken at the eps before
    records = [_record(attack_name, e, robust[i], broken[i] & ~earlier[i], interval.norm.cpu(),
                       interval.attacked_points[i], interval.queries_per_point, seconds) for i, e in enumerate(eps)]
    n_classes = int(y.max()) + 1 if y.numel() else 0
    summary = interval.to_dict()
    certification = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                     for k, v in summary.items() if k not in ("rows", "points", "clean_accuracy")}
    if kind == "l2":
        certification["attacked_abstain_as_error"] = dict(
            zip(map(str, eps), interval.attacked_abstain_as_error, strict=True))
    return EvaluationResult(
        model_name=model_name or _default_name(smoothed, kind),
        model_fingerprint=model_fingerprint,
        data_name=data_name or "tensors",
        threat=kind,
        epsilons=eps,
        suite="certify+attack",
        attacks=[attack_name],
        classes=list(classes or [str(c) for c in range(n_classes)]),
        labels=y.cpu(),
        clean_pred=interval.prediction.cpu(),
        clean_correct=correct,
        robust=robust,
        broken_by=broken_by,
        min_norm=min_norm,
        per_attack=records,
        seed=int(seed),
        versions=versions,
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=time.perf_counter() - started,
        certified=certified,
        certification=certification,
    )


def _record(attack: str, eps: float, robust: Tensor, fresh: Tensor, norm: Tensor, attacked: int, queries: int,
            seconds: float) -> AttackRecord:
    """The attack's record at one eps: ``fresh`` marks the points it broke there (not at a smaller
    eps), among the ``attacked`` it ran on."""
    k = int(fresh.sum())
    norms = norm[fresh]
    return AttackRecord(
        attack=attack, eps=eps, robust_accuracy=float(robust.float().mean()) if robust.numel() else 0.0,
        success_rate=k / attacked if attacked else 0.0,
        median_norm=float(norms.median()) if k else math.nan, mean_queries=float(queries if attacked else 0),
        seconds=seconds, attacked=attacked, broken=k,
        skipped_reason=None if attacked or eps > 0 else "eps = 0: nothing to attack",
    )
