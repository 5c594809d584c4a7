"""``advrobust.evaluate`` on a smoothed classifier: robust accuracy as an interval per eps.

    result = ar.evaluate(GaussianSmoothing(model, sigma=0.25), x, y, threat=ar.L2(), epsilons=[0.5, 1.0])
    result.certified_accuracy    # {eps: lower bound}   (Cohen et al. 2019, CERTIFY)
    result.robust_accuracy       # {eps: upper bound}   (an attack on the smoothed classifier)

The two bounds come from :func:`advrobust.defences.certify_and_attack` on the same points; the
result is an ordinary :class:`~advrobust.evaluation.result.EvaluationResult` (so the table, the
report and the results store take it) with its ``certified`` and ``certification`` filled in. The
clean pass is ``CERTIFY``'s own: a point counts as clean-correct when ``CERTIFY`` returns its label
(abstentions are errors), so both bounds share the clean accuracy.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

import torch
from torch import Tensor

from advrobust.defences.interval import certify_and_attack
from advrobust.defences.smoothing import GaussianSmoothing
from advrobust.errors import InputError
from advrobust.evaluation.result import AttackRecord, EvaluationResult
from advrobust.progress import SILENT, Progress
from advrobust.threat import L2, Threat

#: what ``broken_by`` names for the points the attack on the smoothed classifier broke
ATTACK_NAME = "pgd-smoothed"


def evaluate_smoothed(
    smoothed: GaussianSmoothing,
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
    """The interval evaluation (see the module docstring); l2 only, default eps 0.5, 1.0, 1.5."""
    if threat is not None and threat.name != "l2":
        raise InputError(f"randomized smoothing certifies l2 radii: evaluate it with threat=ar.L2(), not {threat.name}")
    if epsilons is None:
        epsilons = [threat.eps] if threat is not None and threat.eps is not None else [0.5, 1.0, 1.5]
    eps = sorted({float(e) for e in ([epsilons] if isinstance(epsilons, (int, float)) else epsilons)})
    started = time.perf_counter()
    interval = certify_and_attack(smoothed, x, y, eps, seed=seed, progress=progress)
    cert = interval.certificate
    correct = (cert.prediction == y).cpu()
    robust = correct.unsqueeze(0) & ~interval.broken.cpu()
    radius = cert.radius.cpu().unsqueeze(0)
    certified = correct.unsqueeze(0) & (radius >= torch.tensor(eps, dtype=radius.dtype).unsqueeze(1))
    broken_by: list[list[str | None]] = [
        [ATTACK_NAME if bool(b) else None for b in row] for row in interval.broken.cpu()
    ]
    min_norm = torch.where(correct, interval.norm.float().cpu(), torch.zeros(len(correct)))
    seconds = interval.seconds["attack"] / max(len(eps), 1)
    broken = interval.broken.cpu()
    earlier = torch.cat([torch.zeros_like(broken[:1]), broken[:-1]])  # broken at the eps before
    records = [_record(e, robust[i], broken[i] & ~earlier[i], interval.norm.cpu(), interval.attacked_points[i],
                       interval.queries_per_point, seconds) for i, e in enumerate(eps)]
    n_classes = int(y.max()) + 1 if y.numel() else 0
    return EvaluationResult(
        model_name=model_name or f"{type(smoothed.base).__name__} smoothed (σ={smoothed.sigma:g})",
        model_fingerprint=model_fingerprint,
        data_name=data_name or "tensors",
        threat=L2().name,
        epsilons=eps,
        suite="certify+attack",
        attacks=[ATTACK_NAME],
        classes=list(classes or [str(c) for c in range(n_classes)]),
        labels=y.cpu(),
        clean_pred=cert.prediction.cpu(),
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
        certification={**_certification(interval.to_dict()), "attacked_abstain_as_error": dict(
            zip(map(str, eps), interval.attacked_abstain_as_error, strict=True))},
    )


def _record(eps: float, robust: Tensor, fresh: Tensor, norm: Tensor, attacked: int, queries: int,
            seconds: float) -> AttackRecord:
    """The attack's record at one eps: ``fresh`` marks the points it broke there (not at a smaller
    eps), among the ``attacked`` it ran on."""
    k = int(fresh.sum())
    norms = norm[fresh]
    return AttackRecord(
        attack=ATTACK_NAME, eps=eps, robust_accuracy=float(robust.float().mean()) if robust.numel() else 0.0,
        success_rate=k / attacked if attacked else 0.0,
        median_norm=float(norms.median()) if k else math.nan, mean_queries=float(queries if attacked else 0),
        seconds=seconds, attacked=attacked, broken=k,
        skipped_reason=None if attacked or eps > 0 else "eps = 0: nothing to attack",
    )


def _certification(summary: dict[str, Any]) -> dict[str, Any]:
    """The certificate's settings and costs, JSON-safe (no infinities)."""
    keys = ("sigma", "alpha", "n0", "n", "attack", "seconds", "samples_per_second", "seconds_per_certified_point")
    return {k: (None if isinstance(summary[k], float) and not math.isfinite(summary[k]) else summary[k])
            for k in keys}
