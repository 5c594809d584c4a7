"""The gradient-masking audit: should this model's robust accuracy be trusted?

A defense can look robust because gradient attacks fail on *it*, not because no adversarial example
exists (obfuscated gradients, Athalye, Carlini & Wagner 2018, §3). The checks below are those of
Carlini et al. (2019, "On evaluating adversarial robustness", §5.2 "sanity checks" and the
checklist of its appendix), Athalye et al. (2018, §3.1) and the input checks of AutoAttack (Croce &
Hein 2020, its ``checks`` module), run with a verdict and the numbers behind it:

1. ``randomized`` — the model gives the same outputs for the same inputs twice; a randomized model
   needs expectation over transformation (EOT, Athalye et al. 2018 §4.1.2) and verdicts over draws.
2. ``logits`` — the outputs are not probabilities (rows in ``[0, 1]`` summing to 1): margin and DLR
   attacks need logits, a final softmax flattens their gradients.
3. ``classes`` — enough classes for the suites' DLR attacks (DLR needs 3, targeted DLR 4; APGD-T
   tries up to 9 target classes).
4. ``gradients`` — input gradients of the margin loss (C&W ``f_6``, which does not saturate like
   cross-entropy) are finite and not zero (shattered / vanishing gradients, Athalye §3.1); the
   remedy for a non-differentiable input transformation is BPDA (Athalye §4.1.1).
5. ``linearity`` — the loss changes along a short random step as its gradient predicts
   (first-order Taylor: ``L(x + h·d) − L(x) ≈ h·∇L·d``); a gradient that does not describe the loss
   is useless to an attack.
6. ``unbounded`` — an attack with a budget covering the whole box reaches ~100% success (Carlini
   §5.2: "unbounded attacks must reach 100%").
7. ``eps-monotone`` — robust accuracy falls as eps grows (independent runs at eps/4, eps/2, eps, 2eps,
   compared point by point).
8. ``iterative>single-step`` — PGD finds at least what FGSM finds (Carlini §5.2).
9. ``white-box>black-box`` — random noise in the ball, the query-only Square attack and (with a
   ``surrogate``) transfer from it find no more than a few points PGD missed (Carlini §5.2; Athalye §3).
10. ``converged`` — 4× the steps and 3 restarts break only a few of the points PGD left (Carlini §5.2).

A check that fails means the evaluation is suspect (``AuditResult.passed`` is false); a warning asks
for a closer look. Tolerances (``tol``, default ``max(0.02, 2/n)``: two points, or 2%) absorb the
randomness of one run on ``n`` points.

Cost: one clean pass serves checks 1–3 and every attack; the PGD run at eps serves checks 7–10 and
the one at 2eps serves check 6 (the full-box attack runs only on the points 2eps left); the smaller
budgets of check 7, the black-box attacks and the stronger PGD of checks 9 and 10 run only on the
points that PGD left unbroken at eps (what they find elsewhere PGD found too), so that the audit costs
about what one ``standard`` evaluation of the same points costs.
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
from advrobust.attacks.oracle import VERDICT_DRAWS
from advrobust.errors import InputError
from advrobust.losses import is_adversarial_by_majority, margin
from advrobust.progress import SILENT, Progress
from advrobust.runtime.randomness import check_randomness
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


#: EOT draws of the audit's gradient attacks on a randomized model (the ``rand`` suite's)
AUDIT_EOT = 20


class _Auditor:
    def __init__(self, model: Model, x: Tensor, y: Tensor, threat: Threat, steps: int, tol: float,
                 eot: int | None) -> None:
        self.model, self.threat, self.steps, self.tol = model, threat, steps, tol
        self.n = x.shape[0]
        self.randomness = check_randomness(model, x)
        self.clean_logits = self.randomness.logits
        if self.randomness.randomized:  # clean verdicts over draws, as every attack's
            with torch.no_grad():
                predictions = torch.stack([model(x).argmax(1) for _ in range(VERDICT_DRAWS)])
            correct = ~is_adversarial_by_majority(predictions, y)
        else:
            correct = self.clean_logits.argmax(1) == y
        self.x, self.y = x[correct], y[correct]  # clean errors are never robust, never attacked
        self.eot = (AUDIT_EOT if self.randomness.randomized else 1) if eot is None else eot

    def accuracy(self, success: Tensor) -> float:
        """Robust accuracy over all ``n`` points, given success on the clean-correct ones."""
        return int((~success).sum()) / self.n if self.n else 0.0

    def attack(self, name: str, eps: float, keep: Tensor | None = None, **kw: Any) -> Tensor:
        """Success per clean-correct point of attack ``name`` at ``eps``, run only on the points
        ``keep`` (default: all); the others count as not broken by it."""
        keep = torch.ones(self.x.shape[0], dtype=torch.bool, device=self.x.device) if keep is None else keep
        success = torch.zeros(self.x.shape[0], dtype=torch.bool, device=self.x.device)
        if bool(keep.any()):
            if registry.get(name).needs == "gradients":
                kw.setdefault("eot", self.eot)
            attack: Attack = registry.create(name, threat=self.threat.with_eps(eps), **kw)
            success[keep] = attack(self.model, self.x[keep], self.y[keep]).success
        return success

    def grads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            xv = x.detach().requires_grad_(True)
            value = margin(self.model(xv), self.y)
            (g,) = torch.autograd.grad(value.sum(), xv)
        return value.detach(), g.detach()


def _randomized(a: _Auditor) -> Check:
    verdict: Verdict = "warn" if a.randomness.randomized else "pass"
    return Check("randomized", verdict, {"max_output_change_between_calls": a.randomness.max_change},
                 "the same inputs must give the same outputs; a randomized model (noise, random resizing, "
                 "dropout at inference) makes one-sample gradients noisy and one-sample verdicts lucky: evaluate "
                 "it with EOT (ar.evaluate(..., suite='rand'), or eot=20 on an attack) and verdicts over draws")


def _logits(a: _Auditor) -> Check:
    z = a.clean_logits.detach()
    rows_like_probabilities = ((z >= 0).all(1) & (z <= 1).all(1) & ((z.sum(1) - 1).abs() < 1e-3)).float()
    fraction = float(rows_like_probabilities.mean()) if len(z) else 0.0
    verdict: Verdict = "fail" if fraction > 0.5 else "pass"
    return Check("logits", verdict, {"rows_like_probabilities": fraction},
                 "the model must return logits: rows in [0, 1] that sum to 1 are probabilities, whose softmax "
                 "saturates and flattens the margin and DLR losses; remove the model's final softmax")


def _classes(a: _Auditor) -> Check:
    k = int(a.clean_logits.shape[1])
    verdict: Verdict = "pass" if k >= 4 else "warn"
    return Check("classes", verdict, {"classes": k, "apgd_t_target_classes": max(0, min(9, k - 1))},
                 "the standard suite's DLR attacks need 3 classes (APGD-DLR) and 4 (targeted APGD-T); with "
                 "fewer, those attacks are skipped and the evaluation rests on APGD-CE, FMN and Square")


#: the remedy for shattered gradients, with the line of code to try
_BPDA_HINT = (
    "If the model transforms its input non-differentiably (quantization, JPEG, a filter), attack it through "
    "BPDA: ar.evaluate(ar.models.BPDA(preprocess, classifier), x, y)"
)


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
                 f"(e.g. a non-differentiable input transform) stop every gradient attack. {_BPDA_HINT}")


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
                 "(relative error 0 = exact); > 0.5 means the gradient does not describe the loss. "
                 f"{_BPDA_HINT}")


def _unbounded(a: _Auditor, x: Tensor, broken: Tensor) -> Check:
    """PGD with the whole box as its budget, run on the points not yet ``broken`` by a smaller budget
    (an example inside a smaller ball lies inside the box's ball too)."""
    eps = _box_diameter(a.threat, x)
    success = broken | a.attack("pgd", eps, ~broken, steps=100, random_start=False)
    rate = float(success.float().mean()) if success.numel() else 1.0
    verdict: Verdict = "pass" if rate >= 0.99 else ("warn" if rate >= 0.9 else "fail")
    evidence = {"eps": eps, "success_rate": rate, "points": int(success.numel()),
                "attacked_at_full_box": int((~broken).sum())}
    return Check("unbounded", verdict, evidence,
                 "with a budget covering the whole box an attack must break ~every point; if it does not, "
                 "the attack, not the model, is failing")


@dataclass
class _Monotone:
    """The eps-monotone check and the PGD runs it made, reused by the later checks."""

    check: Check
    at_eps: Tensor  # PGD's success per clean-correct point at eps
    at_double: Tensor  # ... at 2 eps (capped at the box's diameter)


def _monotone(a: _Auditor, eps: float, steps: int) -> _Monotone:
    """Independent PGD runs at eps/4, eps/2, eps and 2eps, compared point by point.

    Robust accuracy may only fall as eps grows, and a point is the unit that shows it: one broken
    inside a smaller ball but not at eps, or at eps but not at 2eps, is an attack failing at the
    larger budget (a *violation*). Only the runs that can show one are made: eps and 2eps on every
    point, eps/4 and eps/2 on the points PGD left at eps. A curve flat over the whole 8x range (2eps
    breaks nothing PGD left at eps, and eps/4 already breaks everything PGD broke at eps) is suspicious;
    the eps/4 run on PGD's broken points is made only when 2eps left that possibility open.
    """
    top = _box_diameter(a.threat, a.x) if a.x.numel() else eps
    grid = [eps / 4, eps / 2, eps, min(2 * eps, top)]
    at_eps = a.attack("pgd", grid[2], steps=steps)
    at_double = a.attack("pgd", grid[3], steps=steps)
    held = ~at_eps
    below = a.attack("pgd", grid[0], held, steps=steps) | a.attack("pgd", grid[1], held, steps=steps)
    only_smaller, only_eps = int((below & held).sum()), int((at_eps & ~at_double).sum())
    acc_eps, acc_double = a.accuracy(at_eps), a.accuracy(at_double)
    falls = acc_double < acc_eps or acc_eps == 0
    if not falls:
        falls = not bool(a.attack("pgd", grid[0], at_eps, steps=steps)[at_eps].all())
    evidence = {
        "eps": grid,
        "robust_accuracy_at_eps": acc_eps,
        "robust_accuracy_at_2eps": acc_double,
        "broken_inside_eps/2_or_eps/4_not_at_eps": only_smaller / a.n if a.n else 0.0,
        "broken_at_eps_not_at_2eps": only_eps / a.n if a.n else 0.0,
        "curve_falls": falls,
        "tolerance": a.tol,
    }
    violations = (only_smaller + only_eps) / a.n if a.n else 0.0
    verdict: Verdict = "fail" if violations > a.tol else ("pass" if falls else "warn")
    check = Check("eps-monotone", verdict, evidence,
                  "robust accuracy must fall as eps grows: a point broken inside a smaller ball but not at a "
                  "larger one means the attack fails at the larger eps; a curve flat over an 8x range of eps is "
                  "suspicious")
    return _Monotone(check, at_eps, at_double)


def _finds_little_more(name: str, a: _Auditor, pgd_acc: float, found: dict[str, Tensor], why: str) -> Check:
    """Fail when another attack breaks more than ``tol`` of the points that PGD left unbroken."""
    only = {k: int(v.sum()) / a.n if a.n else 0.0 for k, v in found.items()}
    verdict: Verdict = "fail" if max(only.values()) > a.tol else "pass"
    evidence = {"pgd_robust_accuracy": pgd_acc, **{f"{k}_breaks_beyond_pgd": v for k, v in only.items()},
                "tolerance": a.tol}
    return Check(name, verdict, evidence, why)


def _noise(a: _Auditor, eps: float, keep: Tensor, generator: torch.Generator, draws: int = 10) -> Tensor:
    """Uniform noise in the ball on the points ``keep``: broken if any of ``draws`` samples is misclassified."""
    broken = torch.zeros(a.x.shape[0], dtype=torch.bool, device=a.x.device)
    threat = a.threat.with_eps(eps)
    x, y = a.x[keep], a.y[keep]
    with torch.no_grad():
        for _ in range(draws):
            broken[keep] |= a.model(threat.random_start(x, generator)).argmax(1) != y
    return broken


def audit(
    model: Model,
    x: Tensor,
    y: Tensor,
    threat: Threat,
    *,
    surrogate: Model | None = None,
    steps: int = 40,
    queries: int = 5000,
    eot: int | None = None,
    tol: float | None = None,
    seed: int = 0,
    progress: Progress = SILENT,
) -> AuditResult:
    """Run the gradient-masking checks (module docstring) on ``(x, y)`` under ``threat``.

    ``threat`` must have an eps (l∞, l2 or l1). ``surrogate``: another model to transfer from (adds
    the transfer comparison). ``steps`` (default 40, PGD's) for the PGD runs; ``queries`` (default 5000,
AutoAttack's) for the Square attack of the black-box comparison; ``eot``: the draws each gradient
attack averages over (default: 20 on a randomized model, else 1); ``tol`` as above.
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
    with evaluation_mode(model), progress.task("audit", total=8) as task:
        a = _Auditor(model, x, y, threat, steps, tol, eot)
        result.checks += [_randomized(a), _logits(a), _classes(a)]
        if a.x.shape[0] == 0:
            raise InputError("the model misclassifies every point: nothing to audit")
        task.advance()
        result.checks.append(_gradients(a))
        task.advance()
        result.checks.append(_linearity(a, eps, generator))
        task.advance()
        monotone = _monotone(a, eps, steps)
        result.checks.append(monotone.check)
        pgd_acc, unbroken = a.accuracy(monotone.at_eps), ~monotone.at_eps
        task.advance()
        result.checks.append(_unbounded(a, x, monotone.at_double))
        task.advance()
        result.checks.append(_finds_little_more(
            "iterative>single-step", a, pgd_acc, {"fgsm": a.attack("fgsm", eps, unbroken)},
            "an iterative attack must find at least what a single step finds"))
        task.advance()
        black = {"noise": _noise(a, eps, unbroken, generator),
                 "square": a.attack("square", eps, unbroken, queries=queries)}
        if surrogate is not None:
            black["transfer"] = torch.zeros_like(unbroken)
            if bool(unbroken.any()):
                xs, ys = a.x[unbroken], a.y[unbroken]
                crafted = registry.create("pgd", threat=threat, steps=steps)(surrogate, xs, ys).x_adv
                with torch.no_grad():
                    black["transfer"][unbroken] = model(crafted).argmax(1) != ys
        result.checks.append(_finds_little_more(
            "white-box>black-box", a, pgd_acc, black,
            "white-box gradients must find at least what random noise, a query-only attack (Square) or transfer "
            "from another model finds: each may break only a few of the points PGD left"))
        task.advance()
        strong = a.attack("pgd", eps, unbroken, steps=4 * steps, restarts=3)
        drop = int(strong.sum()) / a.n
        result.checks.append(Check("converged", "warn" if drop > tol else "pass",
                                   {"pgd_robust_accuracy": pgd_acc, "pgd_4x_steps_3_restarts": pgd_acc - drop,
                                    "drop": drop, "tolerance": tol},
                                   "4x the steps and 3 restarts should break few of the points PGD left; more "
                                   "means the reported number is not converged"))
        task.advance()
    result.seconds = time.perf_counter() - started
    return result
