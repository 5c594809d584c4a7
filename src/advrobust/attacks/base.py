"""The attack contract: configured once, called on ``(model, x, y, target=None)``.

    attack = PGD(Linf(eps=0.3), steps=40)
    res = attack(model, x, y)              # or attack(model, x, y, target=t)
    res.x_adv, res.success, res.norm, res.queries

The type is the kind (as foolbox 3's ``FixedEpsilonAttack`` and ``MinimizationAttack``, Rauber et
al. 2020): a :class:`FixedBudgetAttack` maximizes a loss inside the ball of radius eps, a
:class:`MinimumNormAttack` looks for the smallest perturbation that succeeds. What the base class
guarantees for every attack, so that no attack has to remember it:

* inputs are checked before any work (shape, dtype, device, the ``[0, 1]`` box, labels and targets
  in range, ``target ≠ y``), with one-line messages that say how to fix them (:mod:`.inputs`);
* the model runs in eval mode and is left in the mode each of its modules was found in
  (:mod:`.eval_mode`); gradients are taken w.r.t. the input only, so parameters never get ``.grad``;
* the model is run by the runner that the call's :class:`~advrobust.runtime.RuntimePolicy` picks,
  through an :class:`~.oracle.Oracle` that counts queries (forward or gradient evaluations) per point;
* every reported success is *confirmed* by running the plain model again on the returned ``x_adv``
  (not counted as a query): an attack can never report a success the model does not show;
* a fixed-budget attack's ``x_adv`` is always inside the ball and the box (projected once more);
  a minimum-norm attack reports ``norm = inf`` for the points where it found nothing;
* results are deterministic for a given ``seed`` (default 0) or ``generator``.

Points already misclassified (untargeted) or already classified as the target (targeted) count as
successes with ``r = 0`` and cost one query: evaluations skip them anyway.

A subclass implements ``_run(ctx)``, given a :class:`~.context.RunContext`, and returns ``x_adv``.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from advrobust.attacks.access import Access, check_access
from advrobust.attacks.context import RunContext
from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_inputs, check_scores
from advrobust.attacks.oracle import Oracle
from advrobust.attacks.result import AttackResult, SweepResult
from advrobust.errors import InputError
from advrobust.runtime.eot import EOT, Draws, as_draws
from advrobust.runtime.policy import RuntimePolicy
from advrobust.runtime.runner import Model, Runner
from advrobust.tasks import CLASSIFICATION, Task, resolve_task
from advrobust.tensors import per_point
from advrobust.threat import L2, Threat, within_budget


class Attack(ABC):
    """Base class of every attack: subclass :class:`FixedBudgetAttack` or :class:`MinimumNormAttack`
    and implement :meth:`_run`.

    Parameters
    ----------
    threat:
        The threat model (norm and budget); see :mod:`advrobust.threat`.
    seed:
        Seed of the attack's random numbers (random starts, restarts, sampling). ``None`` draws a
        fresh seed on each call. A ``generator`` passed to the call overrides it.
    eot:
        Expectation over transformation (Athalye et al. 2018): every pass averages the scores and
        input gradients of ``eot`` fresh draws of a randomized model (AutoAttack's ``eot_iter``);
        each costs ``eot`` queries. ``1`` (default): one pass. ``Draws(8, average="logits")``
        averages the scores (or ``"probabilities"``) instead. See :mod:`advrobust.runtime.eot`.

    A model whose outputs change between two passes of the same inputs (a randomized defence) is
    noticed on every call: its verdicts — which points are already misclassified, which adversarial
    examples count — are then taken over :data:`~advrobust.attacks.oracle.VERDICT_DRAWS` fresh draws,
    never one (:meth:`~advrobust.attacks.oracle.Oracle.adversarial`).
    """

    #: registry name (set by subclasses)
    name: ClassVar[str] = ""
    #: the norms this attack is defined for
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1", "l0")
    #: what the attack needs of the model
    needs: ClassVar[Access] = "gradients"
    #: whether the attack works on pixels and so needs inputs of shape (N, C, H, W)
    needs_images: ClassVar[bool] = False
    #: the tasks (advrobust.tasks) the attack is defined for
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    #: whether a fixed-budget attack needs an eps (False: the ball is optional, e.g. DAG)
    needs_budget: ClassVar[bool] = True

    def __init__(self, threat: Threat, *, seed: int | None = 0, eot: int | Draws = 1) -> None:
        if not isinstance(threat, Threat):
            raise InputError(
                f"{type(self).__name__} takes a threat model such as ar.Linf(eps=0.3) as its first "
                f"argument, got {threat!r}"
            )
        if threat.name not in self.norms:
            raise InputError(
                f"{type(self).__name__} is defined for {', '.join(self.norms)}; got {threat.name}"
            )
        draws = as_draws(eot)
        self.threat = threat
        self.seed = seed
        self.eot = draws.draws
        self.eot_average = draws.average

    # --- the contract ----------------------------------------------------------------------------
    def __call__(
        self, model: Model, x: Tensor, y: Tensor, target: Tensor | None = None, *,
        generator: torch.Generator | None = None, runtime: RuntimePolicy | None = None,
        task: str | Task | None = None,
    ) -> AttackResult:
        """Attack the batch ``x`` (labels ``y``; ``target``: the classes to reach, ``None``: any other).
        ``runtime`` decides how the model is run (default ``RuntimePolicy()``). ``task`` names what the
        model does (``"segmentation"``, a :class:`~advrobust.tasks.Task`, ...); by default the model's
        ``task`` attribute, else read from the form of ``y`` (:func:`advrobust.tasks.resolve_task`)."""
        task = resolve_task(task, model, y)
        x, y, target = self._checked(model, x, y, target, task)
        n = x.shape[0]
        with evaluation_mode(model):
            oracle = Oracle(self._runner(model, runtime), n, x.device, task)
            if n == 0:
                return self._finalize(oracle, x, y, target, x.clone())
            clean = oracle.logits(x)
            check_scores(clean, y, target, model, task)
            plain = oracle.notice_randomness(x, clean)
            done = oracle.adversarial(x, y, target) if oracle.randomized else task.is_adversarial(plain, y, target)
            generator = generator if generator is not None else self.make_generator(x.device)
            ctx = RunContext(oracle, x, y, target, generator, done)
            return self._finalize(oracle, x, y, target, self._run(ctx))

    def perturb(
        self, model: Model, x: Tensor, y: Tensor, target: Tensor | None = None, *,
        generator: torch.Generator | None = None, runtime: RuntimePolicy | None = None,
        task: str | Task | None = None,
    ) -> Tensor:
        """``x_adv`` for **every** point, the ones already misclassified included: the inner
        maximization of adversarial training (Madry et al. 2018, eq. 2.1), where each point's loss is
        maximized whatever its clean prediction. Checked like ``__call__`` (box, labels; the model
        runs in eval mode and is left as found) and projected onto the ball and the box, but with no
        bookkeeping: no clean pass, no query counts, no confirmation pass. Use ``__call__`` to
        *measure* robustness."""
        task = resolve_task(task, model, y)
        x, y, target = self._checked(model, x, y, target, task)
        generator = generator if generator is not None else self.make_generator(x.device)
        with evaluation_mode(model):
            oracle = Oracle(self._runner(model, runtime), x.shape[0], x.device, task)
            nothing_done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            x_adv = self._run(RunContext(oracle, x, y, target, generator, nothing_done))
        return self.threat.project(x_adv.detach(), x)

    def _checked(
        self, model: Model, x: Tensor, y: Tensor, target: Tensor | None, task: Task = CLASSIFICATION
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The inputs of ``__call__`` and ``perturb``, checked (task, box, labels, image shape, model access)."""
        if task.name not in self.tasks:
            raise InputError(
                f"{type(self).__name__} is defined for {', '.join(self.tasks)}, not {task.name}: for a dense task "
                "use 'dag' or a gradient attack (fgsm, i-fgsm, pgd, mi-fgsm, apgd)"
            )
        x, y, target = check_inputs(model, x, y, target, task)
        if self.needs_images and x.dim() != 4:
            raise InputError(f"{type(self).__name__} attacks images of shape (N, C, H, W), got {tuple(x.shape)}")
        check_access(type(self).__name__, self.needs, model)
        return x, y, target

    @abstractmethod
    def _run(self, ctx: RunContext) -> Tensor:
        """Return ``x_adv`` for the batch ``ctx.x``; ``ctx.done`` marks points already adversarial at
        ``r = 0``. Query the model only through ``ctx.oracle`` so queries are counted per point."""

    def sweep(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        epsilons: Sequence[float],
        target: Tensor | None = None,
        *,
        runtime: RuntimePolicy | None = None,
        task: str | Task | None = None,
    ) -> SweepResult:
        """Success at every budget in ``epsilons``: the robust-accuracy curve of one attack from as
        few runs as its kind allows (one for a minimum-norm attack)."""
        eps = sorted(float(e) for e in epsilons)
        if not eps:
            raise InputError("sweep needs at least one epsilon")
        task = resolve_task(task, model, y)
        if task is not CLASSIFICATION:  # labels in tensor form, so the points can be subset
            x, y, target = self._checked(model, x, y, target, task)
        return self._sweep(model, x, y, eps, target, runtime, task)

    @abstractmethod
    def _sweep(self, model: Model, x: Tensor, y: Tensor, epsilons: list[float], target: Tensor | None,
               runtime: RuntimePolicy | None, task: Task = CLASSIFICATION) -> SweepResult:
        """The sweep of :meth:`sweep` over sorted, non-empty ``epsilons``."""

    # --- what the kind decides -------------------------------------------------------------------
    @abstractmethod
    def _admissible(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """``x_adv`` made admissible before it is confirmed: inside the box (and the ball)."""

    @abstractmethod
    def _reported(self, x: Tensor, x_adv: Tensor, success: Tensor, norm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x_adv, success, norm)`` as the result reports them, from the confirmed success."""

    # --- helpers for subclasses and callers ----------------------------------------------------
    def with_threat(self, threat: Threat) -> Attack:
        """A copy of this attack, same hyper-parameters, another threat model."""
        clone = copy.copy(self)
        clone.threat = threat
        return clone

    def make_generator(self, device: torch.device) -> torch.Generator:
        gen = torch.Generator(device=device)
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(self.seed))
        return gen

    def _finalize(
        self, oracle: Oracle, x: Tensor, y: Tensor, target: Tensor | None, x_adv: Tensor
    ) -> AttackResult:
        x_adv = self._admissible(x_adv.detach(), x)
        if x.shape[0]:
            success = oracle.adversarial(x_adv, y, target)
        else:
            success = torch.zeros(0, dtype=torch.bool, device=x.device)
        x_adv, success, norm = self._reported(x, x_adv, success, self.threat.norm(x_adv - x))
        return AttackResult(
            x_adv=x_adv, success=success, norm=norm, queries=oracle.queries, target=target, extras=oracle.extras
        )

    def _runner(self, model: Model, runtime: RuntimePolicy | None) -> Runner:
        """The runner the call's policy picks, averaged over ``eot`` draws when asked."""
        runner = (runtime if runtime is not None else RuntimePolicy()).runner(model)
        return EOT(runner, self.eot, self.eot_average) if self.eot > 1 else runner

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class FixedBudgetAttack(Attack):
    """Maximizes a loss inside the ball of radius eps (FGSM, PGD, MI-FGSM, APGD, Square, One-Pixel).

    A sweep over budgets runs the attack once per eps, in increasing order, on the points still
    unbroken: an adversarial example found at a smaller eps lies inside every larger ball.
    """

    def __init__(self, threat: Threat, *, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(threat, seed=seed, eot=eot)
        if self.needs_budget and not threat.bounded:
            raise InputError(f"{type(self).__name__} is a fixed-budget attack: give the threat model an eps")

    def _admissible(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return self.threat.project(x_adv, x)

    def _reported(self, x: Tensor, x_adv: Tensor, success: Tensor, norm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return x_adv, success, norm

    def _sweep(self, model: Model, x: Tensor, y: Tensor, epsilons: list[float], target: Tensor | None,
               runtime: RuntimePolicy | None, task: Task = CLASSIFICATION) -> SweepResult:
        n = x.shape[0]
        success = torch.zeros(len(epsilons), n, dtype=torch.bool, device=x.device)
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)
        for e, eps in enumerate(epsilons):
            todo = (~broken).nonzero().squeeze(1)
            if todo.numel():
                sub_target = None if target is None else target[todo]
                attack = self.with_threat(self.threat.with_eps(eps))
                res = attack(model, x[todo], y[todo], sub_target, runtime=runtime, task=task)
                broken[todo] = res.success
                queries[todo] += res.queries
            success[e] = broken
        return SweepResult(
            epsilons=torch.tensor(epsilons, dtype=torch.float64), success=success, queries=queries
        )


class MinimumNormAttack(Attack):
    """Finds the smallest perturbation that succeeds (L-BFGS-B, C&W, DeepFool, JSMA, FMN).

    Usually configured with an unbounded threat model (``threat=None``: :attr:`default_threat`, e.g.
    ``L2()``); with an ``eps``, results larger than eps count as failures. One run answers every
    budget: ``sweep`` compares the norms.
    """

    #: the threat model of ``threat=None``: unbounded, in the attack's own norm
    default_threat: ClassVar[Callable[[], Threat]] = L2

    def __init__(self, threat: Threat | None = None, *, seed: int | None = 0, eot: int = 1) -> None:
        super().__init__(self.default_threat() if threat is None else threat, seed=seed, eot=eot)

    def _admissible(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return x_adv.clamp(0.0, 1.0)

    def _reported(self, x: Tensor, x_adv: Tensor, success: Tensor, norm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.threat.bounded:
            success &= within_budget(norm, self.threat.eps)
        x_adv = torch.where(per_point(success, x), x_adv, x)
        norm = torch.where(success, norm, torch.full_like(norm, math.inf))
        return x_adv, success, norm

    def _sweep(self, model: Model, x: Tensor, y: Tensor, epsilons: list[float], target: Tensor | None,
               runtime: RuntimePolicy | None, task: Task = CLASSIFICATION) -> SweepResult:
        unbounded = self.with_threat(self.threat.with_eps(None))
        res = unbounded(model, x, y, target, runtime=runtime, task=task)
        eps = torch.tensor(epsilons, dtype=torch.float64)
        norm = res.norm.double().cpu()
        success = res.success.cpu()[None, :] & within_budget(norm[None, :], eps[:, None])
        return SweepResult(epsilons=eps, success=success.to(res.success.device), queries=res.queries, norm=res.norm)


def kind_of(attack: Attack | type[Attack]) -> str:
    """``fixed-budget`` or ``minimum-norm``: the kind of an attack (or attack class), for display."""
    cls = attack if isinstance(attack, type) else type(attack)
    return "minimum-norm" if issubclass(cls, MinimumNormAttack) else "fixed-budget"
