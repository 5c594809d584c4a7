"""The robustness of every point at once: minimal perturbations and the robustness curve.

The seed defines the robustness of ``f`` at ``x`` through the smallest ``‖r‖_p`` that changes the
output. Minimum-norm attacks (C&W, DeepFool, FMN, ...) estimate it per point; from those norms the
robust accuracy at *every* eps follows without re-running anything:

    robust_accuracy(ε) = (1/N) · #{i : f(x_i) = y_i  and  ‖r_i‖_p > ε}

a non-increasing, right-continuous step function of ``ε`` (clean-misclassified points are never attacked and never
robust: docs/architecture.md, "Conventions"). Each norm is an upper bound on the true minimal perturbation, so the curve
is an upper bound on the true robust accuracy; :func:`cross_check` lowers it further with a fixed-budget attack (PGD,
APGD) at one eps, taking the minimum of both per point.

    mins = minimal_perturbations(model, x, y, [FMN(L2()), CarliniWagner()])
    curve = mins.curve()                # or robustness_curve(mins.norm, mins.clean_correct)
    curve.at(1.5), curve.summary().median_norm
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from advrobust.attacks.base import Attack, FixedBudgetAttack, MinimumNormAttack, kind_of
from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_inputs
from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.runtime.runner import Model

CLEAN = "clean"  # "broken by" for points the model already misclassifies


@dataclass
class CurveSummary:
    """``median_norm``: median minimal perturbation over the clean-correct points (``inf`` if the
    attacks broke at most half of them); ``max_eps``: where the area stops; ``auc``: area under the
    curve on ``[0, max_eps]``; ``mean_robust_accuracy``: ``auc / max_eps``; ``eps_50``: the smallest
    eps at which robust accuracy is below 50% (0 if clean accuracy is; ``inf`` if never)."""

    median_norm: float
    max_eps: float
    auc: float
    mean_robust_accuracy: float
    eps_50: float


@dataclass
class Curve:
    """Robust accuracy as a step function of eps; ``radius[i]`` is the eps from which point ``i``
    counts as broken (its minimal norm if clean-correct, else 0)."""

    epsilons: Tensor
    robust_accuracy: Tensor
    radius: Tensor
    clean_correct: Tensor

    def at(self, eps: float | Sequence[float]) -> Tensor:
        """Robust accuracy at any eps (exact, not interpolated)."""
        e = torch.as_tensor(eps, dtype=torch.float64).reshape(-1)
        if len(self.radius) == 0:
            return torch.zeros_like(e)
        return (self.radius[None, :] > e[:, None]).double().mean(dim=1)

    def summary(self, max_eps: float | None = None) -> CurveSummary:
        """The curve in a few numbers; ``max_eps`` defaults to the largest finite minimal norm."""
        n = len(self.radius)
        finite = self.radius[torch.isfinite(self.radius)]
        if max_eps is None:
            max_eps = float(finite.max()) if finite.numel() else 0.0
        if max_eps < 0:
            raise InputError(f"max_eps must be >= 0, got {max_eps}")
        # ∫_0^E (1/N) Σ_i 1[ρ_i > e] de = (1/N) Σ_i min(ρ_i, E): exact for the step function
        auc = float(self.radius.clamp(max=max_eps).sum() / n) if n else 0.0
        descending = self.radius.sort(descending=True).values
        below_half = math.ceil(n / 2) - 1  # robust accuracy < 1/2  <=>  #{ρ > ε} <= this
        eps_50 = float(descending[below_half]) if n else math.nan
        mean = auc / max_eps if max_eps > 0 else float(self.at(0.0)[0])  # at E = 0: the value at 0
        return CurveSummary(
            median_norm=_median(self.radius[self.clean_correct]),
            max_eps=float(max_eps),
            auc=auc,
            mean_robust_accuracy=mean if n else math.nan,
            eps_50=eps_50,
        )


@dataclass
class MinimalResult:
    """Per point, the smallest ``‖r‖_p`` found by any attack: ``norm`` (0 for clean-misclassified
    points, ``inf`` where every attack failed), ``broken_by`` (the attack's name, ``"clean"``, or ``""``),
    ``x_adv`` (the clean input where nothing was found), ``queries`` summed over the attacks."""

    norm: Tensor
    broken_by: list[str]
    clean_correct: Tensor
    x_adv: Tensor
    queries: Tensor
    norm_name: str
    attacks: list[str]

    def curve(self, epsilons: Sequence[float] | None = None) -> Curve:
        return robustness_curve(self.norm, self.clean_correct, epsilons)


def _median(values: Tensor) -> float:
    """Median with infinities allowed (mean of the two middle values for an even count)."""
    n = values.numel()
    if n == 0:
        return math.nan
    v = values.double().sort().values
    return float(v[n // 2]) if n % 2 else float((v[n // 2 - 1] + v[n // 2]) / 2)


def _named(attacks: Sequence[Attack] | Mapping[str, Attack]) -> list[tuple[str, Attack]]:
    if isinstance(attacks, Mapping):
        items = list(attacks.items())
    else:
        items = [(a.name or type(a).__name__, a) for a in attacks]
    seen: dict[str, int] = {}
    named = []
    for name, attack in items:
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}#{seen[name]}", attack))
    return named


def minimal_perturbations(
    model: Model,
    x: Tensor,
    y: Tensor,
    attacks: Sequence[Attack] | Mapping[str, Attack],
    target: Tensor | None = None,
    *,
    progress: Progress = SILENT,
) -> MinimalResult:
    """Run minimum-norm ``attacks`` (one norm) on the clean-correct points; keep the smallest ``r`` per point."""
    x, y, target = check_inputs(model, x, y, target)
    named = _named(attacks)
    if not named:
        raise InputError("minimal_perturbations needs at least one minimum-norm attack")
    norms = {a.threat.name for _, a in named}
    if len(norms) > 1 or any(not isinstance(a, MinimumNormAttack) for _, a in named):
        got = ", ".join(f"{n} ({kind_of(a)}, {a.threat.name})" for n, a in named)
        raise InputError(f"minimal_perturbations takes minimum-norm attacks of one norm, got {got}")
    with evaluation_mode(model), torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    n = x.shape[0]
    norm = torch.where(correct, math.inf, 0.0).to(torch.float64)
    broken_by = ["" if c else CLEAN for c in correct.tolist()]
    x_adv = x.clone()
    queries = torch.zeros(n, dtype=torch.long, device=x.device)
    todo = correct.nonzero().squeeze(1)
    with progress.task("minimal perturbations", total=len(named)) as task:
        for name, attack in named:
            if todo.numel():
                sub_target = None if target is None else target[todo]
                res = attack.with_threat(attack.threat.with_eps(None))(model, x[todo], y[todo], sub_target)
                queries[todo] += res.queries
                better = res.success & (res.norm.double() < norm[todo])
                rows = todo[better]
                norm[rows] = res.norm[better].double()
                x_adv[rows] = res.x_adv[better]
                for i in rows.tolist():
                    broken_by[i] = name
            task.advance()
    return MinimalResult(
        norm=norm, broken_by=broken_by, clean_correct=correct, x_adv=x_adv, queries=queries,
        norm_name=norms.pop(), attacks=[name for name, _ in named],
    )


def robustness_curve(norms: Tensor, clean_correct: Tensor, epsilons: Sequence[float] | None = None) -> Curve:
    """Robust accuracy at ``epsilons`` (default: 0 and every distinct finite minimal norm, i.e. every
    point where the step function drops). A point is robust at eps iff clean-correct and ``norm > eps``."""
    norms = torch.as_tensor(norms).detach().double().cpu().reshape(-1)
    correct = torch.as_tensor(clean_correct).detach().bool().cpu().reshape(-1)
    if norms.shape != correct.shape:
        raise InputError(
            f"norms and clean_correct need one entry per point, got {tuple(norms.shape)} and {tuple(correct.shape)}"
        )
    if bool(torch.isnan(norms).any()) or bool((norms < 0).any()):
        raise InputError("norms must be >= 0 (inf where no adversarial example was found), got NaN or negative")
    radius = torch.where(correct, norms, torch.zeros_like(norms))
    if epsilons is None:
        eps = torch.cat([torch.zeros(1, dtype=torch.float64), radius[torch.isfinite(radius) & (radius > 0)]]).unique()
    else:
        eps = torch.as_tensor(list(epsilons), dtype=torch.float64).sort().values
        if bool((eps < 0).any()):
            raise InputError("epsilons must be >= 0")
    curve = Curve(epsilons=eps, robust_accuracy=torch.zeros(0), radius=radius, clean_correct=correct)
    curve.robust_accuracy = curve.at(eps.tolist())
    return curve


@dataclass
class CrossCheck:
    """At one eps: robust accuracy from the curve, from the fixed-budget attack, and from both
    (a point counts robust only if neither broke it); ``broken_by`` per point (``""``: robust);
    ``missed_by_curve``: points the fixed-budget attack broke although the curve counts them robust."""

    eps: float
    robust_curve: float
    robust_fixed: float
    robust_merged: float
    broken_by: list[str]
    missed_by_curve: Tensor


def cross_check(
    model: Model,
    x: Tensor,
    y: Tensor,
    minimal: MinimalResult,
    attack: Attack,
    eps: float,
    target: Tensor | None = None,
    name: str | None = None,
) -> CrossCheck:
    """Merge the curve at ``eps`` with a fixed-budget ``attack`` run at ``eps`` (same norm) on the
    clean-correct points: per point the minimum of both, and which attack broke it."""
    if not isinstance(attack, FixedBudgetAttack) or attack.threat.name != minimal.norm_name:
        raise InputError(
            f"cross_check needs a fixed-budget attack in {minimal.norm_name}, "
            f"got {kind_of(attack)} in {attack.threat.name}"
        )
    name = name or attack.name or type(attack).__name__
    x, y, target = check_inputs(model, x, y, target)
    curve_broken = minimal.norm <= eps
    fixed_broken = ~minimal.clean_correct.clone()
    todo = minimal.clean_correct.nonzero().squeeze(1)
    if todo.numel():
        sub_target = None if target is None else target[todo]
        res = attack.with_threat(attack.threat.with_eps(eps))(model, x[todo], y[todo], sub_target)
        fixed_broken[todo] = res.success
    broken_by = []
    for i, via_curve in enumerate(curve_broken.tolist()):
        if via_curve:
            broken_by.append(minimal.broken_by[i])
        else:
            broken_by.append(name if bool(fixed_broken[i]) else "")
    merged = curve_broken | fixed_broken
    return CrossCheck(
        eps=float(eps),
        robust_curve=float((~curve_broken).double().mean()),
        robust_fixed=float((~fixed_broken).double().mean()),
        robust_merged=float((~merged).double().mean()),
        broken_by=broken_by,
        missed_by_curve=fixed_broken & ~curve_broken,
    )
