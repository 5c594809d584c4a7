"""The attack contract (DESIGN.md): configured once, called on ``(model, x, y, target=None)``.

    attack = PGD(Linf(eps=0.3), steps=40)
    res = attack(model, x, y)              # or attack(model, x, y, target=t)
    res.x_adv, res.success, res.norm, res.queries

What the base class guarantees for every attack, so that no attack has to remember it:

* inputs are checked before any work (shape, dtype, device, the ``[0, 1]`` box, labels and targets
  in range, ``target ≠ y``), with one-line messages that say how to fix them;
* the model runs in eval mode and is left in the mode each of its modules was found in; gradients
  are taken w.r.t. the input only (``torch.autograd.grad``), so parameters never get ``.grad``;
* every reported success is *confirmed* by running the model again on the returned ``x_adv``
  (not counted as a query): an attack can never report a success the model does not show;
* a fixed-budget attack's ``x_adv`` is always inside the ball and the box (projected once more);
  a minimum-norm attack reports ``norm = inf`` for the points where it found nothing;
* queries (forward or gradient evaluations) are counted per point by the :class:`Oracle`;
* results are deterministic for a given ``seed`` (default 0) or ``generator``.

Points already misclassified (untargeted) or already classified as the target (targeted) count as
successes with ``r = 0`` and cost one query: evaluations skip them anyway.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from advrobust.errors import InputError, ModelAccessError
from advrobust.models.fast_forward import FastForward
from advrobust.tasks import CLASSIFICATION, Task, resolve_task
from advrobust.tensors import per_point
from advrobust.threat import Threat

Model = Callable[[Tensor], Tensor]
Access = Literal["gradients", "scores", "labels"]


@dataclass
class AttackResult:
    """What an attack returns, one entry per point of the batch.

    ``x_adv``: the adversarial inputs (for a point that was not broken: the best attempt of a
    fixed-budget attack, the clean input of a minimum-norm attack). ``success``: confirmed by
    re-running the model. ``norm``: ``‖x_adv − x‖_p`` (minimum-norm attacks: ``inf`` where
    ``success`` is false). ``queries``: forward/gradient evaluations spent on the point.
    """

    x_adv: Tensor
    success: Tensor
    norm: Tensor
    queries: Tensor
    target: Tensor | None = None
    #: per-point diagnostics an attack reports besides the contract's fields (DAG: iterations, flipped)
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self) else 0.0

    def select(self, index: Tensor) -> AttackResult:
        """The results of a subset of points (a boolean mask or indices)."""
        return AttackResult(
            x_adv=self.x_adv[index],
            success=self.success[index],
            norm=self.norm[index],
            queries=self.queries[index],
            target=None if self.target is None else self.target[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )


@dataclass
class SweepResult:
    """Success of one attack at several budgets: ``success[e, i]`` for ``epsilons[e]``, point ``i``.

    ``norm`` is the per-point norm of the smallest successful perturbation for a minimum-norm attack
    (``inf`` where none was found) and ``None`` for a fixed-budget attack.
    """

    epsilons: Tensor
    success: Tensor
    queries: Tensor
    norm: Tensor | None = None


def model_access(model: Model) -> Access:
    """How much of the model an attack may use: ``gradients`` (default), ``scores`` or ``labels``.

    Black-box wrappers declare less with an ``access`` attribute.
    """
    return getattr(model, "access", "gradients")


@contextmanager
def evaluation_mode(model: Model) -> Iterator[None]:
    """Put every module of ``model`` in eval mode; restore each module's own mode afterwards."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _model_device(model: Model) -> torch.device | None:
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return None


class Oracle:
    """The model as an attack sees it: logits and input gradients, each call counted per point.

    ``index`` names, for every row of a call, the point of the original batch it belongs to
    (repeats allowed: a population of candidates for one image counts once per candidate).
    ``task`` says what the model returns (its output is checked against it on every call);
    ``extras`` collects the per-point diagnostics an attack reports in its result.
    """

    def __init__(self, model: Model, n: int, device: torch.device, task: Task = CLASSIFICATION) -> None:
        self.model = model
        self.task = task
        self.run = FastForward(model)  # the same function, in the CPU's fastest layout and batches
        self.access: Access = model_access(model)
        self.queries = torch.zeros(n, dtype=torch.long, device=device)
        self.extras: dict[str, Tensor] = {}

    def count(self, rows: int, index: Tensor | None) -> None:
        """Count one query per row, for points ``index`` (``None``: one row per point of the batch)."""
        if index is None:
            if rows != self.queries.shape[0]:
                raise ValueError("Oracle: pass `index` when querying a subset of the points")
            self.queries += 1
        else:
            self.queries.index_add_(0, index, torch.ones_like(index, dtype=torch.long))

    def _forward(self, x: Tensor) -> Tensor:
        return self._scores(self.run(x), x)

    def confirm(self, x: Tensor) -> Tensor:
        """The plain model's scores for ``x`` (not counted, never the fast path): the confirmation
        pass that decides every reported success."""
        with torch.no_grad():
            return self._scores(self.run.exact(x), x)

    def _scores(self, out: Any, x: Tensor) -> Tensor:
        return self.task.check_output(out, x)

    @torch.no_grad()
    def logits(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """The model's output for ``x``: one query per row."""
        self.count(x.shape[0], index)
        return self._forward(x)

    def logits_and_grad(
        self,
        x: Tensor,
        objective: Callable[[Tensor], Tensor],
        index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits, objective(logits), ∇_x objective)`` with the objective per point; one query a row.

        The gradient is taken w.r.t. ``x`` alone (``torch.autograd.grad``): no ``.grad`` is written
        into the model's parameters.
        """
        if self.access != "gradients":
            raise ModelAccessError(
                f"this attack needs gradients, but the model offers only {self.access}: "
                "use a query attack (e.g. 'square', 'one-pixel') or pass a differentiable torch model"
            )
        self.count(x.shape[0], index)
        with torch.enable_grad():
            x_var = x.detach().requires_grad_(True)
            z = self._forward(x_var)
            value = objective(z)
            (grad,) = torch.autograd.grad(value.sum(), x_var)
        return z.detach(), value.detach(), grad.detach()


def check_inputs(
    model: Model, x: Any, y: Any, target: Any = None, task: Task = CLASSIFICATION
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate an attack's inputs; return them as tensors (``y`` and ``target`` in the task's form:
    for classification ``int64`` class ids)."""
    if not callable(model):
        raise InputError(f"model must be callable (x -> logits), got {type(model).__name__}")
    if not isinstance(x, Tensor):
        raise InputError(f"x must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise InputError(f"x must be a float tensor with pixels in [0, 1], got dtype {x.dtype} (divide by 255?)")
    if x.dim() < 2:
        raise InputError(f"x must be a batch of shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise InputError("x contains NaN or infinite values")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise InputError(
            f"x must lie in [0, 1] (got min {float(x.min()):.4g}, max {float(x.max()):.4g}): pass raw "
            "pixels and put normalization inside the model (advrobust.models.Normalize)"
        )
    device = _model_device(model)
    if device is not None and device != x.device:
        raise InputError(f"x is on {x.device} but the model is on {device}: move them to one device")
    y = task.labels(y, x)
    if target is not None:
        target = task.targets(target, y, x)
    return x, y, target


class Attack(ABC):
    """Base class of every attack. Subclasses implement :meth:`_run`.

    Parameters
    ----------
    threat:
        The threat model (norm and budget); see :mod:`advrobust.threat`.
    seed:
        Seed of the attack's random numbers (random starts, restarts, sampling). ``None`` draws a
        fresh seed on each call. A ``generator`` passed to the call overrides it.
    """

    #: registry name (set by subclasses)
    name: ClassVar[str] = ""
    #: "fixed-budget" or "minimum-norm" (DESIGN.md)
    kind: ClassVar[Literal["fixed-budget", "minimum-norm"]] = "fixed-budget"
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

    def __init__(self, threat: Threat, *, seed: int | None = 0) -> None:
        if not isinstance(threat, Threat):
            raise InputError(
                f"{type(self).__name__} takes a threat model such as ar.Linf(eps=0.3) as its first "
                f"argument, got {threat!r}"
            )
        if threat.name not in self.norms:
            raise InputError(
                f"{type(self).__name__} is defined for {', '.join(self.norms)}; got {threat.name}"
            )
        if self.kind == "fixed-budget" and self.needs_budget and not threat.bounded:
            raise InputError(f"{type(self).__name__} is a fixed-budget attack: give the threat model an eps")
        self.threat = threat
        self.seed = seed

    # --- the contract ----------------------------------------------------------------------------
    def __call__(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        target: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        task: str | Task | None = None,
    ) -> AttackResult:
        """Attack ``model`` on ``(x, y)``. ``task`` names what the model does (``"segmentation"``, a
        :class:`~advrobust.tasks.Task`, ...); by default the model's ``task`` attribute, else inferred
        from the form of ``y`` (:func:`advrobust.tasks.resolve_task`)."""
        task = resolve_task(task, model, y)
        x, y, target = self._checked(model, x, y, target, task)
        n = x.shape[0]
        with evaluation_mode(model):
            oracle = Oracle(model, n, x.device, task)
            if n == 0:
                return self._finalize(oracle, x, y, target, x.clone())
            clean = oracle.logits(x)
            task.check_classes(clean, y, target, model_access(model) == "gradients")
            generator = generator if generator is not None else self.make_generator(x.device)
            x_adv = self._run(oracle, x, y, target, generator, task.is_adversarial(clean, y, target))
            return self._finalize(oracle, x, y, target, x_adv)

    def perturb(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        target: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
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
            oracle = Oracle(model, x.shape[0], x.device, task)
            nothing_done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            x_adv = self._run(oracle, x, y, target, generator, nothing_done)
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
        self._check_access(model)
        return x, y, target

    @abstractmethod
    def _run(
        self,
        oracle: Oracle,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
        done: Tensor,
    ) -> Tensor:
        """Return ``x_adv`` for the batch. ``done`` marks points already adversarial at ``r = 0``.

        Query the model only through ``oracle`` so queries are counted per point.
        """

    def sweep(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        epsilons: Sequence[float],
        target: Tensor | None = None,
        *,
        task: str | Task | None = None,
    ) -> SweepResult:
        """Success at every budget in ``epsilons`` (DESIGN.md: many budgets from one call)."""
        eps = sorted(float(e) for e in epsilons)
        if not eps:
            raise InputError("sweep needs at least one epsilon")
        task = resolve_task(task, model, y)
        if task is not CLASSIFICATION:  # labels in tensor form, so the points can be subset
            x, y, target = self._checked(model, x, y, target, task)
        return self._sweep(model, x, y, eps, target, task)

    @abstractmethod
    def _sweep(
        self, model: Model, x: Tensor, y: Tensor, epsilons: list[float], target: Tensor | None, task: Task
    ) -> SweepResult: ...

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

    def _check_access(self, model: Model) -> None:
        order = {"labels": 0, "scores": 1, "gradients": 2}
        have = model_access(model)
        if order[have] < order[self.needs]:
            raise ModelAccessError(
                f"{type(self).__name__} needs {self.needs} of the model, which offers only {have}: "
                "pick an attack that works with less (e.g. 'square' or 'one-pixel' for scores)"
            )

    def _finalize(
        self, oracle: Oracle, x: Tensor, y: Tensor, target: Tensor | None, x_adv: Tensor
    ) -> AttackResult:
        x_adv = x_adv.detach()
        if self.kind == "fixed-budget":
            x_adv = self.threat.project(x_adv, x)
        else:
            x_adv = x_adv.clamp(0.0, 1.0)
        if x.shape[0]:
            z = oracle.confirm(x_adv)
            success = oracle.task.is_adversarial(z, y, target)
        else:
            success = torch.zeros(0, dtype=torch.bool, device=x.device)
        norm = self.threat.norm(x_adv - x)
        if self.kind == "minimum-norm":
            if self.threat.bounded:
                success &= norm <= self.threat.eps * (1 + 1e-6) + 1e-9
            x_adv = torch.where(per_point(success, x), x_adv, x)
            norm = torch.where(success, norm, torch.full_like(norm, math.inf))
        return AttackResult(
            x_adv=x_adv, success=success, norm=norm, queries=oracle.queries, target=target, extras=oracle.extras
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class FixedBudgetAttack(Attack):
    """Maximizes a loss inside the ball of radius eps (FGSM, PGD, MI-FGSM, APGD, Square, One-Pixel).

    A sweep over budgets runs the attack once per eps, in increasing order, on the points still
    unbroken: an adversarial example found at a smaller eps lies inside every larger ball.
    """

    kind = "fixed-budget"

    def _sweep(
        self, model: Model, x: Tensor, y: Tensor, epsilons: list[float], target: Tensor | None, task: Task
    ) -> SweepResult:
        n = x.shape[0]
        success = torch.zeros(len(epsilons), n, dtype=torch.bool, device=x.device)
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        broken = torch.zeros(n, dtype=torch.bool, device=x.device)
        for e, eps in enumerate(epsilons):
            todo = (~broken).nonzero().squeeze(1)
            if todo.numel():
                sub_target = None if target is None else target[todo]
                res = self.with_threat(self.threat.with_eps(eps))(model, x[todo], y[todo], sub_target, task=task)
                broken[todo] = res.success
                queries[todo] += res.queries
            success[e] = broken
        return SweepResult(
            epsilons=torch.tensor(epsilons, dtype=torch.float64), success=success, queries=queries
        )


class MinimumNormAttack(Attack):
    """Finds the smallest perturbation that succeeds (L-BFGS-B, C&W, DeepFool, JSMA, FMN).

    Usually configured with an unbounded threat model (``L2()``); with an ``eps``, results larger
    than eps count as failures. One run answers every budget: ``sweep`` compares the norms.
    """

    kind = "minimum-norm"

    def _sweep(
        self, model: Model, x: Tensor, y: Tensor, epsilons: list[float], target: Tensor | None, task: Task
    ) -> SweepResult:
        unbounded = self.with_threat(self.threat.with_eps(None))
        res = unbounded(model, x, y, target, task=task)
        eps = torch.tensor(epsilons, dtype=torch.float64)
        norm = res.norm.double().cpu()
        success = res.success.cpu()[None, :] & (norm[None, :] <= eps[:, None] * (1 + 1e-6) + 1e-9)
        return SweepResult(epsilons=eps, success=success.to(res.success.device), queries=res.queries, norm=res.norm)
