"""The one iterative loop of the gradient attacks (BIM, PGD, MI-FGSM, APGD, APGD-T).

The attacks differ only in their start (the clean input or a random point of the ball), their step
rule (a :class:`StepRule`: plain steepest ascent, momentum, APGD's schedule) and which objective they
maximize; everything else lives here, once:

* :func:`ascend` evaluates ``(logits, loss, ∇_x loss)`` at the current iterate ``x_n`` through the
  :class:`~advrobust.attacks.base.Oracle` (queries counted per point), offers ``x_n`` to the
  :class:`BestTracker`, drops the points that succeeded from the *active set* (early stop: they cost
  no further forward/backward pass), and asks the step rule for ``x_{n+1}``. After the last step the
  final iterate is evaluated by a forward pass only, so no iterate goes unexamined.
* :class:`BestTracker` keeps the best adversarial per point across steps *and restarts*, never the
  last iterate (the torchattacks/foolbox bug) nor the best per batch (as ART once did).
* :class:`IterativeAttack` runs the restarts (and, for APGD-T, the target classes) on the points
  still unbroken and returns the tracker's best.

Which iterate is "best" (documented contract): a successful iterate always beats an unsuccessful one.
With ``early_stop=True`` a point leaves the active set at its first success, so the first success is
kept; with ``early_stop=False`` the point keeps maximizing the loss and the successful iterate of
highest loss is kept. A point never broken keeps its iterate of highest loss. Losses of different
restarts are compared directly (the same objective); APGD-T compares the DLR values of its different
target classes, which share the same scale (Croce & Hein 2020, eq. 7).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.inputs import check_positive_int
from advrobust.attacks.oracle import Oracle
from advrobust.losses import Objective, get_loss
from advrobust.tensors import per_point
from advrobust.threat import Threat


@dataclass
class Active:
    """The rows of the batch still being attacked, with everything that must shrink alongside them.

    ``index``: position of each row in the original batch; ``x``: the clean inputs; ``x_cur``: the
    current iterate; ``y``/``goal``: label and the target that defines success (``None``:
    untargeted); ``aim``: the target of the objective (APGD-T aims at a class without requiring
    it); ``state``: per-point tensors of the step rule (momentum, step sizes, ...).
    """

    index: Tensor
    x: Tensor
    x_cur: Tensor
    y: Tensor
    goal: Tensor | None
    aim: Tensor | None
    state: dict[str, Tensor] = field(default_factory=dict)

    def keep(self, mask: Tensor) -> None:
        """Drop the rows where ``mask`` is false (from every tensor, the rule's state included)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                setattr(self, f.name, value[mask])
        self.state = {k: v[mask] for k, v in self.state.items()}

    def __len__(self) -> int:
        return int(self.index.shape[0])


class BestTracker:
    """The best iterate per point over all steps and restarts (see the module docstring for "best").

    ``success`` starts as the points already adversarial at ``r = 0``: they are never attacked and
    keep ``x_adv = x``.
    """

    def __init__(self, x: Tensor, done: Tensor) -> None:
        self.x_best = x.clone()
        self.loss = torch.full((x.shape[0],), -torch.inf, dtype=x.dtype, device=x.device)
        self.success = done.clone()

    def update(self, index: Tensor, x_cand: Tensor, loss: Tensor, adv: Tensor) -> None:
        """Offer the candidates ``x_cand`` (rows ``index`` of the batch) with their loss and success."""
        had = self.success[index]
        better = (adv & ~had) | ((adv == had) & (loss > self.loss[index]))
        if bool(better.any()):
            rows = index[better]
            self.x_best[rows] = x_cand[better]
            self.loss[rows] = loss[better]
            self.success[rows] = had[better] | adv[better]

    def pending(self) -> Tensor:
        """Indices of the points not broken yet."""
        return (~self.success).nonzero().squeeze(1)


def steepest_step(threat: Threat, x: Tensor, origin: Tensor, direction: Tensor, size: Tensor | float) -> Tensor:
    """``Π_{x, ε}(origin + size·d)`` where ``d`` is the steepest-ascent direction of unit ``‖·‖_p``
    for ``direction`` (sign for l∞, ``g/‖g‖₂`` for l2, sparse for l1), projected around the clean
    input ``x`` (never the previous iterate, a bug ART once had)."""
    d = threat.ascent_direction(direction, origin)
    if isinstance(size, Tensor):
        size = per_point(size, d)
    return threat.project(origin + size * d, x)


class StepRule(ABC):
    """How an attack moves from ``x_n`` to ``x_{n+1}`` given ``∇_x loss(x_n)``.

    A rule may keep per-point tensors in ``active.state`` (set them in :meth:`init`); the loop
    shrinks them with the active set, so a rule never sees a point that has left it.
    """

    def __init__(self, threat: Threat) -> None:
        self.threat = threat

    def init(self, active: Active) -> None:
        """Create the per-point state for a fresh run (default: none)."""
        return None

    @abstractmethod
    def step(self, n: int, active: Active, grad: Tensor, loss: Tensor) -> Tensor:
        """``x_{n+1}``, inside the ball around the clean ``active.x`` and the box."""


class GradientStep(StepRule):
    """``x_{n+1} = Π_{x, ε}(x_n + α·d(∇_x L(x_n)))``: I-FGSM/BIM (Kurakin et al. 2017) and PGD
    (Madry et al. 2018, eq. 2)."""

    def __init__(self, threat: Threat, alpha: float) -> None:
        super().__init__(threat)
        self.alpha = alpha

    def step(self, n: int, active: Active, grad: Tensor, loss: Tensor) -> Tensor:
        return steepest_step(self.threat, active.x, active.x_cur, grad, self.alpha)


class MomentumStep(StepRule):
    """MI-FGSM (Dong et al. 2018, eqs. 6–7): ``g_{n+1} = μ·g_n + ∇/‖∇‖₁`` with the l1 norm taken
    per point (so a point's result never depends on the rest of the batch, unlike torchattacks once), then
    ``x_{n+1} = Π_{x, ε}(x_n + α·d(g_{n+1}))``. A zero gradient adds nothing (no division by 0)."""

    def __init__(self, threat: Threat, alpha: float, decay: float) -> None:
        super().__init__(threat)
        self.alpha = alpha
        self.decay = decay

    def init(self, active: Active) -> None:
        active.state["momentum"] = torch.zeros_like(active.x)

    def step(self, n: int, active: Active, grad: Tensor, loss: Tensor) -> Tensor:
        l1 = grad.reshape(grad.shape[0], -1).abs().sum(dim=1)
        scale = torch.where(l1 > 0, 1.0 / l1.clamp_min(torch.finfo(l1.dtype).tiny), torch.zeros_like(l1))
        g = self.decay * active.state["momentum"] + grad * per_point(scale, grad)
        active.state["momentum"] = g
        return steepest_step(self.threat, active.x, active.x_cur, g, self.alpha)


@dataclass
class Problem:
    """What stays fixed during one call: the oracle, the objective, the clean batch, the goal."""

    oracle: Oracle
    objective: Objective
    x: Tensor
    y: Tensor
    goal: Tensor | None
    tracker: BestTracker
    early_stop: bool


def _pick(t: Tensor | None, rows: Tensor) -> Tensor | None:
    return None if t is None else t[rows]


def ascend(
    problem: Problem,
    rows: Tensor,
    x_start: Tensor,
    rule: StepRule,
    steps: int,
    aim: Tensor | None = None,
) -> None:
    """Run ``steps`` gradient steps of ``rule`` from ``x_start`` on the points ``rows`` of the batch.

    ``aim`` (per point of the whole batch) is the class the objective targets; ``None`` means the
    goal of the call (the user's target, or untargeted). Results go into ``problem.tracker``.
    """
    active = Active(
        index=rows,
        x=problem.x[rows],
        x_cur=x_start,
        y=problem.y[rows],
        goal=_pick(problem.goal, rows),
        aim=_pick(problem.goal if aim is None else aim, rows),
    )
    rule.init(active)

    def objective(z: Tensor) -> Tensor:
        return problem.objective(z, active.y, active.aim)

    for n in range(steps + 1):
        last = n == steps
        if last:  # the final iterate needs its loss and success, not a gradient
            z = problem.oracle.logits(active.x_cur, index=active.index)
            loss, grad = objective(z), None
        else:
            z, loss, grad = problem.oracle.logits_and_grad(active.x_cur, objective, index=active.index)
        adv = problem.oracle.task.is_adversarial(z, active.y, active.goal)
        problem.tracker.update(active.index, active.x_cur, loss, adv)
        if last:
            return
        if problem.early_stop and bool(adv.any()):
            keep = ~adv
            active.keep(keep)
            grad, loss = grad[keep], loss[keep]
            if len(active) == 0:
                return
        active.x_cur = rule.step(n, active, grad, loss)


class IterativeAttack(FixedBudgetAttack):
    """Base of the iterative gradient attacks: restarts (and aims) over the one loop :func:`ascend`.

    Subclasses say how to start (:meth:`start`) and which step rule to use (:meth:`rule`); APGD-T
    also overrides :meth:`aims` to run once per target class.

    Parameters common to all: ``steps`` (gradient evaluations per restart), ``restarts`` (runs from
    fresh random starts; each runs only on the points still unbroken when ``early_stop`` is on),
    ``loss`` (``"ce"``, ``"margin"``, ``"dlr"`` or a callable ``(logits, y, target) -> per-point
    value to maximize``), ``early_stop`` (a point stops costing queries at its first success; off: it
    keeps maximizing the loss), ``seed``.
    """

    norms = ("linf", "l2")
    tasks = ("classification", "segmentation", "detection", "verification")

    def __init__(self, threat: Threat, *, steps: int, restarts: int = 1, loss: str | Objective = "ce",
                 early_stop: bool = True, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, seed=seed, eot=eot)
        owner = type(self).__name__
        self.steps = check_positive_int(owner, "steps", steps)
        self.restarts = check_positive_int(owner, "restarts", restarts)
        get_loss(loss)  # fail early on an unknown name
        self.loss = loss
        self.early_stop = bool(early_stop)

    @abstractmethod
    def rule(self) -> StepRule:
        """A fresh step rule for one run (rules may hold per-run state)."""

    def start(self, x: Tensor, restart: int, generator: torch.Generator) -> Tensor:
        """The first iterate ``x_0`` (default: the clean input, as in I-FGSM)."""
        return x.clone()

    def aims(self, ctx: RunContext) -> Iterator[Tensor | None]:
        """The objective's target for each round of restarts (default: one round, the call's goal)."""
        yield None

    def objective(self, oracle: Oracle) -> Objective:
        """The call's objective: the loss in the form of the oracle's task (per pixel for a segmenter)."""
        return oracle.task.objective(self.loss)

    def _run(self, ctx: RunContext) -> Tensor:
        tracker = BestTracker(ctx.x, ctx.done)
        problem = Problem(ctx.oracle, self.objective(ctx.oracle), ctx.x, ctx.y, ctx.target, tracker, self.early_stop)
        attacked = ctx.pending()
        for aim in self.aims(ctx):
            for restart in range(self.restarts):
                rows = tracker.pending() if self.early_stop else attacked
                if rows.numel() == 0:
                    return tracker.x_best
                ascend(problem, rows, self.start(ctx.x[rows], restart, ctx.generator), self.rule(), self.steps, aim)
        return tracker.x_best

