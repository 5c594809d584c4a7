"""The gradient-masking audit: should this model's robust accuracy be trusted?

A defense can look robust because gradient attacks fail on *it*, not because no adversarial example
exists (obfuscated gradients, Athalye, Carlini & Wagner 2018, §3). The checks below are those of
Carlini et al. (2019, "On evaluating adversarial robustness", §5.2 "sanity checks" and the
checklist of its appendix) and Athalye et al. (2018, §3.1), run with a verdict and the numbers
behind it:

1. ``gradients`` — input gradients of the margin loss (C&W ``f_6``, which does not saturate like
   cross-entropy) are finite and not zero (shattered / vanishing gradients, Athalye §3.1).
2. ``linearity`` — the loss changes along a short random step as its gradient predicts
   (first-order Taylor: ``L(x + h·d) − L(x) ≈ h·∇L·d``); a gradient that does not describe the loss
   is useless to an attack.
3. ``unbounded`` — an attack with a budget covering the whole box reaches ~100% success (Carlini
   §5.2: "unbounded attacks must reach 100%").
4. ``eps-monotone`` — robust accuracy falls as eps grows (independent runs at eps/4, eps/2, eps, 2eps).
5. ``iterative>single-step`` — PGD finds at least what FGSM finds (Carlini §5.2).
6. ``white-box>black-box`` — PGD finds at least what the query-only Square attack, random noise in
   the ball and (with a ``surrogate``) transfer from it find (Carlini §5.2; Athalye §3).
7. ``converged`` — 4× the steps and 3 restarts lower robust accuracy only a little (Carlini §5.2).

A check that fails means the evaluation is suspect (``AuditResult.passed`` is false); a warning asks
for a closer look. Tolerances (``tol``, default ``max(0.02, 2/n)``: two points, or 2%) absorb the
randomness of one run on ``n`` points.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from advrobust.attacks import registry
from advrobust.attacks.base import Attack
from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_inputs
from advrobust.errors import InputError
from advrobust.losses import margin
from advrobust.progress import SILENT, Progress
from advrobust.runtime.runner import Model
from advrobust.threat import Threat

Verdict = Literal["pass", "fail", "warn"]


@dataclass
class Check:
    """One audit check: its verdict, the numbers behind it and what they mean."""

    name: str
    verdict: Verdict
    evidence: dict[str, Any]
    explanation: str


@dataclass
class AuditResult:
    """All checks; ``passed`` is true when none failed."""

    threat: str
    eps: float
    n_points: int
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.verdict != "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=float)


def _box_diameter(threat: Threat, x: Tensor) -> float:
    """The budget that covers the whole box ``[0, 1]^d``: l∞ 1, l2 sqrt(d), l1 d."""
    d = x[0].numel()
    return {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d)}[threat.name]


class _Auditor:
    def __init__(self, model: Model, x: Tensor, y: Tensor, threat: Threat, steps: int, tol: float) -> None:
        self.model, self.threat, self.steps, self.tol = model, threat, steps, tol
        self.n = x.shape[0]
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        self.x, self.y = x[correct], y[correct]  # clean errors are never robust, never attacked

    def accuracy(self, success: Tensor) -> float:
        """Robust accuracy over all ``n`` points, given success on the clean-correct ones."""
        return int((~success).sum()) / self.n if self.n else 0.0

    def attack(self, name: str, eps: float, **kw: Any) -> Tensor:
        if self.x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool)
        attack: Attack = registry.create(name, threat=self.threat.with_eps(eps), **kw)
        return attack(self.model, self.x, self.y).success

    def grads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            xv = x.detach().requires_grad_(True)
            value = margin(self.model(xv), self.y)
            (g,) = torch.autograd.grad(value.sum(), xv)
        return value.detach(), g.detach()


def _gradients(a: _Auditor) -> Check:
    _, g = a.grads(a.x)
    flat = g.flatten(1)
    nonfinite = float((~torch.isfinite(flat)).any(1).float().mean()) if len(flat) else 0.0
    zero = float((flat.abs().amax(1) == 0).float().mean()) if len(flat) else 0.0
    norms = flat.norm(dim=1)
    evidence = {
        "zero_gradient_fraction": zero,
        "nonfinite_gradient_fraction": nonfinite,
        "gradient_norm_median": float(norms.median()) if len(norms) else math.nan,
        "gradient_norm_min": float(norms.min()) if len(norms) else math.nan,
    }
    verdict: Verdict = "fail" if nonfinite > 0 or zero >= 0.5 else ("warn" if zero > 0.05 else "pass")
    return Check("gradients", verdict, evidence,
                 "input gradients of the margin loss must be finite and non-zero: zero or NaN gradients "
                 "(e.g. a non-differentiable input transform) stop every gradient attack")


def _linearity(a: _Auditor, eps: float, generator: torch.Generator) -> Check:
    h = eps / 20
    value, g = a.grads(a.x)
    d = a.threat.ascent_direction(torch.randn(a.x.shape, generator=generator, dtype=a.x.dtype).to(a.x.device))
    x_step = a.threat.project(a.x + h * d, a.x, eps)
    with torch.no_grad():
        actual = margin(a.model(x_step), a.y) - value
    predicted = ((x_step - a.x) * g).flatten(1).sum(1)
    moved = (actual.abs() + predicted.abs()) > 0
    rel = (actual - predicted).abs() / (actual.abs() + predicted.abs()).clamp_min(1e-12)
    median = float(rel[moved].median()) if bool(moved.any()) else math.nan
    evidence = {"step": h, "median_relative_error": median, "flat_fraction": float((~moved).float().mean())}
    if not bool(moved.any()):
        verdict: Verdict = "fail"
    else:
        verdict = "fail" if median > 0.5 else ("warn" if median > 0.25 else "pass")
    return Check("linearity", verdict, evidence,
                 "along a random step of size eps/20 the loss should change as the gradient predicts "
                 "(relative error 0 = exact); > 0.5 means the gradient does not describe the loss")


def _unbounded(a: _Auditor, x: Tensor) -> Check:
    eps = _box_diameter(a.threat, x)
    success = a.attack("pgd", eps, steps=100, random_start=False)
    rate = float(success.float().mean()) if success.numel() else 1.0
    verdict: Verdict = "pass" if rate >= 0.99 else ("warn" if rate >= 0.9 else "fail")
    return Check("unbounded", verdict, {"eps": eps, "success_rate": rate, "points": int(success.numel())},
                 "with a budget covering the whole box an attack must break ~every point; if it does not, "
                 "the attack, not the model, is failing")


def _monotone(a: _Auditor, eps: float, steps: int) -> tuple[Check, float]:
    top = _box_diameter(a.threat, a.x) if a.x.numel() else eps
    grid = [min(eps * f, top) for f in (0.25, 0.5, 1.0, 2.0)]
    accs = [a.accuracy(a.attack("pgd", e, steps=steps)) for e in grid]
    rises = [accs[i + 1] - accs[i] for i in range(len(accs) - 1)]
    evidence = {"eps": grid, "robust_accuracy": accs}
    if max(rises) > a.tol:
        verdict: Verdict = "fail"
    elif accs[0] > 0 and accs[-1] >= accs[0] - 1e-12:
        verdict = "warn"
    else:
        verdict = "pass"
    return Check("eps-monotone", verdict, evidence,
                 "robust accuracy must fall as eps grows; a rise means the attack fails at larger eps, "
                 "a flat curve over an 8x range of eps is suspicious"), accs[2]


def _beats(name: str, pgd_acc: float, others: dict[str, float], tol: float, why: str) -> Check:
    worst = min(others.values())
    verdict: Verdict = "fail" if worst < pgd_acc - tol else "pass"
    evidence = {f"{k}_robust_accuracy": v for k, v in others.items()}
    return Check(name, verdict, {"pgd_robust_accuracy": pgd_acc, **evidence, "tolerance": tol}, why)


def _noise(a: _Auditor, eps: float, generator: torch.Generator, draws: int = 10) -> Tensor:
    """Uniform noise in the ball: broken if any of ``draws`` samples is misclassified."""
    broken = torch.zeros(a.x.shape[0], dtype=torch.bool, device=a.x.device)
    threat = a.threat.with_eps(eps)
    with torch.no_grad():
        for _ in range(draws):
            broken |= a.model(threat.random_start(a.x, generator)).argmax(1) != a.y
    return broken


def audit(
    model: Model,
    x: Tensor,
    y: Tensor,
    threat: Threat,
    *,
    surrogate: Model | None = None,
    steps: int = 40,
    tol: float | None = None,
    seed: int = 0,
    progress: Progress = SILENT,
) -> AuditResult:
    """Run the gradient-masking checks (module docstring) on ``(x, y)`` under ``threat``.

    ``threat`` must have an eps (l∞, l2 or l1). ``surrogate``: another model to transfer from (adds
    the transfer comparison). ``steps`` (default 40, PGD's) for the PGD runs; ``tol`` as above.
    """
    started = time.perf_counter()
    if not isinstance(threat, Threat) or threat.eps is None:
        raise InputError("audit needs a threat model with an eps, e.g. ar.Linf(eps=0.3)")
    if threat.name not in ("linf", "l2", "l1"):
        raise InputError(f"audit supports linf, l2 and l1 threat models, not {threat.name}")
    x, y, _ = check_inputs(model, x, y)
    eps = float(threat.eps)
    n = x.shape[0]
    tol = max(0.02, 2 / max(n, 1)) if tol is None else float(tol)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    result = AuditResult(threat=threat.name, eps=eps, n_points=n)
    with evaluation_mode(model), progress.task("audit", total=7) as task:
        a = _Auditor(model, x, y, threat, steps, tol)
        if a.x.shape[0] == 0:
            raise InputError("the model misclassifies every point: nothing to audit")
        result.checks.append(_gradients(a))
        task.advance()
        result.checks.append(_linearity(a, eps, generator))
        task.advance()
        result.checks.append(_unbounded(a, x))
        task.advance()
        check, pgd_acc = _monotone(a, eps, steps)
        result.checks.append(check)
        task.advance()
        fgsm_acc = a.accuracy(a.attack("fgsm", eps))
        result.checks.append(_beats("iterative>single-step", pgd_acc, {"fgsm": fgsm_acc}, tol,
                                    "an iterative attack must find at least what a single step finds"))
        task.advance()
        black = {"noise": a.accuracy(_noise(a, eps, generator)), "square": a.accuracy(a.attack("square", eps))}
        if surrogate is not None:
            crafted = registry.create("pgd", threat=threat, steps=steps)(surrogate, a.x, a.y).x_adv
            with torch.no_grad():
                black["transfer"] = a.accuracy(model(crafted).argmax(1) != a.y)
        result.checks.append(_beats("white-box>black-box", pgd_acc, black, tol,
                                    "white-box gradients must find at least what random noise, a query-only "
                                    "attack (Square) or transfer from another model finds"))
        task.advance()
        strong = a.accuracy(a.attack("pgd", eps, steps=4 * steps, restarts=3))
        drop = pgd_acc - strong
        result.checks.append(Check("converged", "warn" if drop > tol else "pass",
                                   {"pgd_robust_accuracy": pgd_acc, "pgd_4x_steps_3_restarts": strong,
                                    "drop": drop, "tolerance": tol},
                                   "4x the steps and 3 restarts should change robust accuracy little; a "
                                   "larger drop means the reported number is not converged"))
        task.advance()
    result.seconds = time.perf_counter() - started
    return result
