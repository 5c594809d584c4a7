"""Dense Adversary Generation (Xie et al. 2017, "Adversarial examples for semantic segmentation and
object detection", Algorithm 1), for segmentation and detection.

A dense task is many small classification problems, its *targets* ``t_n`` (pixels of a segmenter,
proposals of a detector: here the detector's grid cells, :mod:`advrobust.tasks.detection`), each with
a true class ``l_n`` and an adversarial class ``l'_n``. With ``f_c(x, t_n)`` the score of class ``c``
at target ``t_n``, DAG iterates (``m = 1, 2, …``):

* ``T_m = {n : argmax_c f_c(x + r, t_n) = l_n}`` — the targets still correct (for a detector: or
  whose class ``l_n`` still scores above the detection threshold, so it would still be detected);
* ``r_m = Σ_{n ∈ T_m} [∇_x f_{l'_n}(x + r, t_n) − ∇_x f_{l_n}(x + r, t_n)]``;
* ``r ← r + γ·r_m / ‖r_m‖_∞`` with ``γ = 0.5`` (pixel values 0..255 in the paper: here ``γ`` is in
  those units, so a step moves a pixel by at most ``γ/255``);

until ``T_m`` is empty or ``M = 200`` iterations have run (the paper's settings). Each image stops on
its own. ``x + r`` is kept in the box ``[0, 1]``, and with a bounded threat model also in the eps-ball
(the optional projection; the paper's DAG is unbounded).

Adversarial classes (``targets``): ``"permute"`` (the paper: a random permutation of the classes with
no fixed point, drawn per image from the attack's generator; a detector's foreground classes are
permuted among themselves), a class id (every target to that class), or ``"vanish"`` (detection:
every proposal to the background). A ``target`` passed to the call (the task's form) overrides them.

Per image, the result's ``extras`` hold ``iterations`` (the ``m`` at which it stopped) and ``flipped``
(the fraction of the targets correct at the start that are no longer correct).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from advrobust.attacks.base import FixedBudgetAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.inputs import check_nonnegative, check_positive_int
from advrobust.attacks.oracle import Oracle
from advrobust.attacks.result import AttackResult
from advrobust.errors import InputError
from advrobust.runtime.policy import RuntimePolicy
from advrobust.runtime.runner import Model
from advrobust.tasks import Detection, Segmentation, Task, resolve_task
from advrobust.tensors import per_point
from advrobust.threat import Linf, Threat

TargetMode = Literal["permute", "vanish"] | int


def derangement(k: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """A random permutation of ``0..k−1`` with no fixed point (``k ≥ 2``), by rejection."""
    while True:
        p = torch.randperm(k, generator=generator, device=generator.device).to(device)
        if not bool((p == torch.arange(k, device=device)).any()):
            return p


def adversarial_labels(
    labels: Tensor, mode: TargetMode, num_classes: int, generator: torch.Generator, first: int = 0
) -> Tensor:
    """The adversarial class ``l'_n`` of every target (``labels``: ``N×P`` true classes).

    ``"permute"``: per image a derangement of the classes ``first..K−1`` (classes below ``first``,
    e.g. a detector's background, map to themselves); ``"vanish"``: class 0; an int: that class."""
    if mode == "vanish":
        return torch.zeros_like(labels)
    if mode == "permute":
        out = torch.empty_like(labels)
        for i in range(labels.shape[0]):
            table = torch.arange(num_classes, device=labels.device)
            table[first:] = derangement(num_classes - first, generator, labels.device) + first
            out[i] = table[labels[i]]
        return out
    return torch.full_like(labels, int(mode))


def dag_value(logits: Tensor, labels: Tensor, adv: Tensor, active: Tensor) -> Tensor:
    """``Σ_{n ∈ T_m} (f_{l'_n} − f_{l_n})`` per image (``logits`` ``N×K×P``; the rest ``N×P``)."""
    gain = logits.gather(1, adv[:, None]).squeeze(1) - logits.gather(1, labels[:, None]).squeeze(1)
    return (gain * active).sum(dim=1)


def still_correct(task: Task, logits: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
    """``T_m``: the valid targets whose prediction is still the true class (``N×P`` bool), in the
    task's sense (:meth:`~advrobust.tasks.Task.still_correct`: for a detector, while it would still be
    detected)."""
    return valid & task.still_correct(logits, labels)


def linf_normalized(r: Tensor, gamma: float) -> Tensor:
    """``γ·r / ‖r‖_∞`` per image (an all-zero ``r`` stays zero)."""
    peak = r.flatten(1).abs().amax(dim=1)
    scale = torch.where(peak > 0, gamma / peak.clamp_min(torch.finfo(r.dtype).tiny), torch.zeros_like(peak))
    return r * per_point(scale, r)


class DAG(FixedBudgetAttack):
    """Dense Adversary Generation (Xie et al. 2017, Algorithm 1; see the module docstring).

    Parameters: ``threat`` (default ``Linf()``, unbounded as in the paper; an eps adds the
    projection onto the ball), ``targets`` (``"permute"``, ``"vanish"`` or a class id), ``gamma``
    (0.5, in 0..255 pixel units), ``max_iter`` (200). Cost: one forward+backward pass per image and
    iteration while it has targets left, plus one forward pass at the start and one at the end.

    The paper's γ suits its images (hundreds of pixels a side, natural textures, 30–150
    iterations). A step of ``γ·r/‖r‖∞`` moves only the pixels of largest gradient by the full
    ``γ/255``; on the built-in 64×64 digit scenes those pixels need changes of about 0.3 before the
    targets flip, so γ = 0.5 leaves most images unfinished at 200 iterations
    (``benchmarks/bench_tasks.py``, which also reports γ = 2 and 4). ``gamma`` and ``max_iter`` are
    options for such models, the paper's values the defaults; quote γ with the numbers.
    """

    name = "dag"
    norms = ("linf", "l2")
    tasks = ("segmentation", "detection")
    needs_budget = False

    def __init__(
        self,
        threat: Threat | None = None,
        *,
        targets: TargetMode = "permute",
        gamma: float = 0.5,
        max_iter: int = 200,
        seed: int | None = 0,
    ) -> None:
        super().__init__(threat if threat is not None else Linf(), seed=seed)
        if not (targets in ("permute", "vanish") or (isinstance(targets, int) and not isinstance(targets, bool)
                                                      and targets >= 0)):
            raise InputError(f"DAG: targets must be 'permute', 'vanish' or a class id >= 0, got {targets!r}")
        self.targets = targets
        gamma = check_nonnegative("DAG", "gamma", gamma)
        if not gamma:
            raise InputError("DAG: gamma must be > 0")
        self.gamma = gamma
        self.max_iter = check_positive_int("DAG", "max_iter", max_iter)

    def __call__(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        target: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        runtime: RuntimePolicy | None = None,
        task: str | Task | None = None,
    ) -> AttackResult:
        """The attack contract; against a detector with ``targets="vanish"`` (or a class id) and no
        ``target``, the call is judged as targeted at that class per image (``"vanish"``: success
        means no detection at all)."""
        resolved = resolve_task(task, model, y)
        if target is None and isinstance(resolved, Detection) and self.targets != "permute" and isinstance(x, Tensor):
            cls = 0 if self.targets == "vanish" else int(self.targets)
            target = torch.full((x.shape[0],), cls, dtype=torch.long, device=x.device)
        return super().__call__(model, x, y, target, generator=generator, runtime=runtime, task=resolved)

    def _targets_of(self, task: Task, labels: Tensor, k: int, target: Tensor | None, generator: torch.Generator):
        if target is not None:
            if isinstance(task, Segmentation):
                return target.reshape(labels.shape)
            return target[:, None].expand_as(labels)
        if self.targets == "vanish" and not isinstance(task, Detection):
            raise InputError("DAG: targets='vanish' is for detection; use 'permute' or a class id for segmentation")
        first = 1 if isinstance(task, Detection) else 0
        return adversarial_labels(labels, self.targets, k, generator, first)

    def _run(self, ctx: RunContext) -> Tensor:
        oracle, x, y, target, generator, done = ctx.oracle, ctx.x, ctx.y, ctx.target, ctx.generator, ctx.done
        task = oracle.task
        if not task.dense:
            raise InputError(f"DAG attacks dense tasks (segmentation, detection), not {task.name}")
        n = x.shape[0]
        x_adv = x.clone()
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        flipped = torch.zeros(n, dtype=x.dtype, device=x.device)
        rows = (~done).nonzero().squeeze(1)
        if rows.numel():
            view = task.dense_view(oracle.logits(x[rows], index=rows), y[rows])
            k = view.logits.shape[1]
            if isinstance(self.targets, int) and not isinstance(self.targets, bool) and self.targets >= k:
                raise InputError(f"DAG: target class {self.targets} is outside [0, {k - 1}] for this model")
            adv = self._targets_of(task, view.labels, k, None if target is None else target[rows], generator)
            valid = view.mask & (adv != view.labels)
            start = still_correct(task, view.logits, view.labels, valid)
            self._ascend(oracle, task, x, x_adv, rows, view.labels, adv, valid, iterations)
            end = still_correct(task, task.dense_logits(oracle.logits(x_adv[rows], index=rows)), view.labels, valid)
            flipped[rows] = ((start & ~end).sum(dim=1) / start.sum(dim=1).clamp_min(1)).to(x.dtype)
        oracle.extras.update(iterations=iterations, flipped=flipped)
        return x_adv

    def _ascend(
        self, oracle: Oracle, task: Task, x: Tensor, x_adv: Tensor, rows: Tensor, labels: Tensor, adv: Tensor,
        valid: Tensor, iterations: Tensor,
    ) -> None:
        """Algorithm 1's loop on the images ``rows``, writing ``x_adv`` and ``iterations`` in place."""
        live = torch.arange(rows.shape[0], device=x.device)  # positions in rows still iterating
        step = self.gamma / 255.0
        for m in range(self.max_iter):
            index = rows[live]
            active_count = torch.zeros(live.shape[0], dtype=torch.long, device=x.device)

            def objective(z: Tensor, live: Tensor = live, counts: Tensor = active_count) -> Tensor:
                logits = task.dense_logits(z)
                active = still_correct(task, logits, labels[live], valid[live])
                counts.copy_(active.sum(dim=1))
                return dag_value(logits, labels[live], adv[live], active)

            _, _, grad = oracle.logits_and_grad(x_adv[index], objective, index=index)
            going = active_count > 0
            iterations[index[~going]] = m
            if not bool(going.any()):
                return
            live, index, grad = live[going], index[going], grad[going]
            moved = x_adv[index] + linf_normalized(grad, step)
            x_adv[index] = self.threat.project(moved, x[index])
            iterations[index] = m + 1
