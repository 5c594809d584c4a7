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
With ``strengths``, either also measures the physical success at each strength ``s`` (the
distribution ``transform.scaled(s)``; ``0`` is digital), on ``curve_draws`` draws per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.errors import InputError
from advrobust.losses import is_adversarial
from advrobust.transforms import Transform, physical

Render = Callable[[Tensor, Tensor, torch.Generator], Tensor]  # (x rows, their indices, generator) -> images


@dataclass
class PhysicalSuccess:
    """One attack's digital and physical success rates on ``n_points`` images × ``n_draws`` draws.

    ``per_point``: the fraction of draws that succeeded, per image; ``baseline``: the same rate for
    the clean images under the same transformations.
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

    def to_dict(self) -> dict:
        return asdict(self)


def _goal(y: Tensor, target: Tensor | int | None) -> Tensor | None:
    if target is None:
        return None
    if isinstance(target, int):
        return torch.full_like(y, target)
    return target


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
) -> Tensor:
    """``N×n_draws`` booleans: is ``transform(render(x))`` adversarial, draw by draw? Images are
    rendered and transformed afresh for every draw."""
    if n_draws < 1:
        raise InputError(f"n_draws must be at least 1, got {n_draws}")
    goal = _goal(y, target)
    n = x.shape[0]
    rows = torch.arange(n, device=x.device).repeat(n_draws)  # draw-major: image i, draw d at d·n + i
    out = torch.empty(rows.shape[0], dtype=torch.bool, device=x.device)
    with evaluation_mode(model):
        for start in range(0, rows.shape[0], batch_size):
            idx = rows[start : start + batch_size]
            images = transform(render(x[idx], idx, generator), generator)
            out[start : start + batch_size] = is_adversarial(model(images), y[idx], None if goal is None else goal[idx])
    return out.reshape(n_draws, n).T


def _rate(m: Tensor) -> float:
    return float(m.float().mean()) if m.numel() else 0.0


def _evaluate(name: str, model, render_digital: Render, render_physical: Render, x: Tensor, y: Tensor,
              target, transform: Transform | None, n_draws: int, seed: int,
              strengths: Sequence[float] = (), curve_draws: int | None = None) -> PhysicalSuccess:
    transform = physical() if transform is None else transform
    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    goal = _goal(y, target)
    with torch.no_grad(), evaluation_mode(model):
        digital = is_adversarial(model(render_digital(x, torch.arange(x.shape[0], device=x.device), gen)), y, goal)
    hits = success_matrix(model, render_physical, x, y, target, transform, n_draws, gen)
    clean = success_matrix(model, lambda xb, idx, g: xb, x, y, target, transform, n_draws, gen)
    per_strength = n_draws if curve_draws is None else curve_draws
    curve = [(float(s), _rate(success_matrix(model, render_physical, x, y, target, transform.scaled(s),
                                             per_strength, gen))) for s in strengths]
    return PhysicalSuccess(
        name=name, digital=_rate(digital), physical=_rate(hits), baseline=_rate(clean), n_points=x.shape[0],
        n_draws=n_draws, transform=transform.describe(), per_point=hits.float().mean(dim=1).tolist(), curve=curve,
    )


def texture_success(model, texture, x: Tensor, y: Tensor, *, transform: Transform | None = None,
                    n_draws: int = 100, seed: int = 0, strengths: Sequence[float] = (),
                    curve_draws: int | None = None, name: str = "universal patch") -> PhysicalSuccess:
    """Digital and physical success of a trained :class:`~advrobust.attacks.patch.Texture` on
    held-out images ``x`` (labels ``y``; its own target, if any). Images of the target class are
    left out."""
    target = texture.target
    if target is not None:
        keep = y != target
        x, y = x[keep], y[keep]
    return _evaluate(
        name, model,
        lambda xb, idx, g: texture.apply_digital(xb, idx),
        lambda xb, idx, g: texture.apply(xb, g, idx),
        x, y, target, transform, n_draws, seed, strengths, curve_draws,
    )


def perturbation_success(model, x: Tensor, x_adv: Tensor, y: Tensor, target: Tensor | int | None = None, *,
                         transform: Transform | None = None, n_draws: int = 100, seed: int = 0,
                         strengths: Sequence[float] = (), curve_draws: int | None = None,
                         name: str = "per-image") -> PhysicalSuccess:
    """Digital and physical success of per-image adversarial examples ``x_adv`` of the clean images
    ``x`` (the baseline is measured on ``x``)."""
    if x_adv.shape != x.shape:
        raise InputError(f"x_adv has shape {tuple(x_adv.shape)} but x has {tuple(x.shape)}")

    def render(xb: Tensor, idx: Tensor, g: torch.Generator) -> Tensor:
        return x_adv[idx]

    return _evaluate(name, model, render, render, x, y, target, transform, n_draws, seed, strengths, curve_draws)
