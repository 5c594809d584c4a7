"""The physical success rate: does an attack still work after the world has transformed it?

A digital adversarial example is checked once, on the exact pixels the attack returned. A physical
one is printed, moved, relit and photographed. Following Athalye et al. (2018) and Brown et al.
(2017), its **physical success rate** is the fraction of ``(image, draw)`` pairs on which the attack
succeeds when each image is rendered ``n_draws`` times (100 by default) through fresh draws of a
transformation distribution (:mod:`advrobust.transforms`; by default
:func:`advrobust.transforms.physical`), reported next to the **digital** success rate.

The same draws are applied to the clean images: ``baseline`` is how often the transformations alone
already give the attack's outcome (the clean image misclassified, or classified as the target), so a
physical success rate is never read without what the transformations do by themselves.

* :func:`texture_success` — a universal patch or masked texture (a fresh placement per draw for a
  patch; digitally, the patch centred at scale 1);
* :func:`perturbation_success` — per-image adversarial examples (e.g. PGD's ``x_adv``, a masked
  attack's), transformed as a whole;
* :func:`texture_examples` — for a segmenter or detector, a few scenes under one draw with and
  without the texture, and the model's outputs on both (what a report draws);
With ``strengths``, either also measures the physical success at each strength ``s`` (the
distribution ``transform.scaled(s)``; ``0`` is digital), on ``curve_draws`` draws per image.

Segmenters and detectors (a texture trained with their task, or ``task=`` for per-image examples):
the labels follow every draw (hidden under the texture, moved with the scene: :meth:`Task.follow
<advrobust.tasks.Task.follow>`), success is the task's criterion per image, and ``metrics`` holds the
task's metrics (mIoU and pixel accuracy; mAP and recall) over all draws: ``clean`` (digital, no
attack), ``baseline`` (the transformations alone), ``digital`` and ``physical`` (the attack).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.errors import InputError
from advrobust.evaluation.tasks import TaskExample, drawn_outputs
from advrobust.tasks import Task, resolve_task
from advrobust.tasks.scoring import RunningMetrics
from advrobust.transforms import Identity, Transform, physical

# (x rows, y rows, their indices, generator) -> (images, the labels as the images show them)
Render = Callable[[Tensor, Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


@dataclass
class PhysicalSuccess:
    """One attack's digital and physical success rates on ``n_points`` images × ``n_draws`` draws.

    ``per_point``: the fraction of draws that succeeded, per image; ``baseline``: the same rate for
    the clean images under the same transformations; ``metrics``: a dense task's metrics (see the
    module docstring; empty for a classifier); ``intervals``: for a segmenter, a 95% bootstrap
    interval of each of those mIoUs over the images (each image with all its draws); ``curve``:
    ``(strength, value)`` of the physical success rate, or for a dense task of its first metric
    (``curve_of``: ``miou`` or ``map``).
    """

    name: str
    digital: float
    physical: float
    baseline: float
    n_points: int
    n_draws: int
    transform: str
    per_point: list[float] = field(default_factory=list)
    curve: list[tuple[float, float]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    curve_of: str = "success"
    intervals: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _unchanged(xb: Tensor, yb: Tensor, idx: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    return xb, yb


@torch.no_grad()
def success_matrix(
    model: Callable[[Tensor], Tensor],
    render: Render,
    x: Tensor,
    y: Tensor,
    target: Tensor | int | None,
    transform: Transform,
    n_draws: int,
    generator: torch.Generator,
    batch_size: int = 1024,
    task: Task | None = None,
    metrics: RunningMetrics | None = None,
) -> Tensor:
    """``N×n_draws`` booleans: is ``transform(render(x))`` adversarial, draw by draw? Images are
    rendered and transformed afresh for every draw; a dense ``task``'s labels follow them, and
    ``metrics`` (if given) counts every draw. ``target``: a class (the task's
    :meth:`~advrobust.tasks.Task.class_target`) or, for a classifier, one class per image."""
    if n_draws < 1:
        raise InputError(f"n_draws must be at least 1, got {n_draws}")
    task = resolve_task(task, model, y)
    if isinstance(target, Tensor) and task.dense:
        raise InputError(f"a {task.name} target for a physical success rate is one class id, not a tensor")
    n = x.shape[0]
    rows = torch.arange(n, device=x.device).repeat(n_draws)  # draw-major: image i, draw d at d·n + i
    out = torch.empty(rows.shape[0], dtype=torch.bool, device=x.device)
    with evaluation_mode(model):
        for start in range(0, rows.shape[0], batch_size):
            idx = rows[start : start + batch_size]
            images, labels = render(x[idx], y[idx], idx, generator)
            params = transform.sample(images, generator)
            images = transform.apply(images, params)
            if task.dense:
                labels = task.follow(labels, transform, params, (images.shape[-2], images.shape[-1]))
            if target is None:
                goal = None
            elif isinstance(target, Tensor):
                goal = target[idx]
            else:
                goal = task.class_target(target, labels)
            z = model(images)
            out[start : start + batch_size] = task.is_adversarial(z, labels, goal)
            if metrics is not None:
                metrics.add(z, labels, idx)
    return out.reshape(n_draws, n).T


def _rate(m: Tensor) -> float:
    return float(m.float().mean()) if m.numel() else 0.0


def _evaluate(name: str, model, render_digital: Render, render_physical: Render, x: Tensor, y: Tensor,
              target, transform: Transform | None, n_draws: int, seed: int, task: Task,
              strengths: Sequence[float] = (), curve_draws: int | None = None) -> PhysicalSuccess:
    transform = physical() if transform is None else transform
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    keys = ("clean", "digital", "physical", "baseline")
    counts = {key: RunningMetrics(task, n_images=x.shape[0]) for key in keys} if task.dense else {}

    def run(render: Render, t: Transform, draws: int, metrics: RunningMetrics | None) -> Tensor:
        return success_matrix(model, render, x, y, target, t, draws, gen, task=task, metrics=metrics)

    def at_strength(strength: float) -> float:
        metrics = RunningMetrics(task) if task.dense else None
        hits = run(render_physical, transform.scaled(strength), per_strength, metrics)
        return _rate(hits) if metrics is None else next(iter(metrics.result().values()))

    if task.dense:
        run(_unchanged, Identity(), 1, counts["clean"])
    digital = run(render_digital, Identity(), 1, counts.get("digital"))
    hits = run(render_physical, transform, n_draws, counts.get("physical"))
    clean = run(_unchanged, transform, n_draws, counts.get("baseline"))
    per_strength = n_draws if curve_draws is None else curve_draws
    curve = [(float(s), at_strength(s)) for s in strengths]
    metrics = {key: m.result() for key, m in counts.items()}
    intervals = {key: list(ci) for key, m in counts.items() if (ci := m.interval()) is not None}
    return PhysicalSuccess(
        name=name, digital=_rate(digital), physical=_rate(hits), baseline=_rate(clean), n_points=x.shape[0],
        n_draws=n_draws, transform=transform.describe(), per_point=hits.float().mean(dim=1).tolist(), curve=curve,
        metrics=metrics, curve_of=next(iter(metrics["clean"])) if metrics else "success", intervals=intervals,
    )


def texture_success(model, texture, x: Tensor, y: Any, *, transform: Transform | None = None,
                    n_draws: int = 100, seed: int = 0, strengths: Sequence[float] = (),
                    curve_draws: int | None = None, name: str = "universal patch") -> PhysicalSuccess:
    """Digital and physical success of a trained :class:`~advrobust.attacks.patch.Texture` on
    held-out images ``x`` (labels ``y``; its own target and task). A classifier's images of the
    target class are left out."""
    task = texture.task
    y = task.labels(y, x)
    target = texture.target
    if target is not None and not task.dense:
        keep = y != target
        x, y = x[keep], y[keep]

    def digital(xb: Tensor, yb: Tensor, idx: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        return texture.placed(xb, yb, None, idx, digital=True)

    def physical_draw(xb: Tensor, yb: Tensor, idx: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        return texture.placed(xb, yb, g, idx)

    return _evaluate(name, model, digital, physical_draw, x, y, target, transform, n_draws, seed, task,
                     strengths, curve_draws)


def texture_examples(model, texture, x: Tensor, y: Any, *, transform: Transform | None = None, k: int = 4,
                     seed: int = 0, name: str = "universal patch") -> list[TaskExample]:
    """The first ``k`` scenes of a dense task under one fresh draw each, clean and with the texture
    (the same scene draw for both), with the model's outputs and the labels as the patched scene
    shows them."""
    task = texture.task
    if not task.dense:
        raise InputError(f"texture_examples draws a segmenter's or detector's outputs, not a {task.name} model's")
    transform = physical() if transform is None else transform
    x, y = x[:k], task.labels(y, x)[:k]
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    with torch.no_grad(), evaluation_mode(model):
        placed, hidden = texture.placed(x, y, gen)
        params = transform.sample(x, gen)
        seen, seen_placed = transform.apply(x, params), transform.apply(placed, params)
        truth = task.follow(hidden, transform, params, (x.shape[-2], x.shape[-1]))
        before, after = drawn_outputs(model(seen), task), drawn_outputs(model(seen_placed), task)
    return [TaskExample(None, name, seen[i].cpu(), seen_placed[i].cpu(), before[i], after[i], truth[i].cpu())
            for i in range(x.shape[0])]


def metrics_under(model, x: Tensor, y: Tensor, task: Task, transform: Transform, n_draws: int,
                  seed: int = 0) -> dict[str, float]:
    """A segmenter's or detector's metrics on the images ``x`` (labels ``y`` in the task's form)
    under ``n_draws`` fresh draws of ``transform`` each, labels following every draw; the draws
    depend only on ``seed`` and the number of images, so calls on other images of the same count
    (clean, and each attack's examples) are judged under the same draws."""
    metrics = RunningMetrics(task, n_images=x.shape[0])
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    success_matrix(model, _unchanged, x, y, None, transform, n_draws, generator, task=task, metrics=metrics)
    return metrics.result()


def accuracy_under(model, x: Tensor, y: Tensor, transform: Transform, n_draws: int = 20,
                   seed: int = 0) -> tuple[float, float]:
    """A classifier's accuracy on the clean images ``x`` as they are, and under ``n_draws`` fresh
    draws of ``transform`` each: how much the transformations alone cost the model, which a physical
    success rate includes (a model that misreads a quarter of the clean digits under the scene turns
    a quarter of an untargeted attack's draws into successes by itself)."""
    task = resolve_task("classification")
    y = task.labels(y, x)
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    as_is = success_matrix(model, _unchanged, x, y, None, Identity(), 1, gen, task=task)
    drawn = success_matrix(model, _unchanged, x, y, None, transform, n_draws, gen, task=task)
    return 1 - _rate(as_is), 1 - _rate(drawn)


def perturbation_success(model, x: Tensor, x_adv: Tensor, y: Any, target: Tensor | int | None = None, *,
                         transform: Transform | None = None, n_draws: int = 100, seed: int = 0,
                         strengths: Sequence[float] = (), curve_draws: int | None = None,
                         name: str = "per-image", task: Task | str | None = None) -> PhysicalSuccess:
    """Digital and physical success of per-image adversarial examples ``x_adv`` of the clean images
    ``x`` (the baseline is measured on ``x``); ``task`` as in :func:`advrobust.tasks.resolve_task`."""
    if x_adv.shape != x.shape:
        raise InputError(f"x_adv has shape {tuple(x_adv.shape)} but x has {tuple(x.shape)}")
    task = resolve_task(task, model, y)
    y = task.labels(y, x)

    def render(xb: Tensor, yb: Tensor, idx: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        return x_adv[idx], yb

    return _evaluate(name, model, render, render, x, y, target, transform, n_draws, seed, task, strengths, curve_draws)
