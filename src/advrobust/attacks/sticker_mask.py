"""Where to put a sticker: the mask generation of RP2 (Eykholt et al. 2018, "Robust physical-world
attacks on deep learning visual classification", CVPR; the Robust Physical Perturbations algorithm).

RP2 does not fix the shape of its stickers in advance. It first optimizes one perturbation ``δ`` over
the whole allowed surface, for every image of the set and under the transformations of the scene,
with an L1 penalty that makes it sparse (their objective with the mask ``M_x`` the whole surface and
the norm ``p = 1``)::

    δ̂ = argmin_δ  λ·‖δ‖₁ − E_{x∼X, t∼T} [ J(f(t(clip(x + δ))), ·) ]

where ``J`` is the task's per-point objective (targeted: ``−CE(z, t)``; untargeted: ``CE(z, y)``;
a segmenter's or detector's through :meth:`Task.objective <advrobust.tasks.Task.objective>`, with
its labels moved with each draw of the scene), and then keeps as the mask the pixels where ``|δ̂|``
is largest, the regions the model is most sensitive to. The texture inside the mask is trained
afterwards, as any masked texture (:class:`~advrobust.attacks.patch.UniversalMask`, RP2's second stage)::

    mask = sticker_mask(model, x_train, y_train, target=8, area=0.1, transform=printed_digit())
    sticker = UniversalMask(mask, transform=printed_digit()).fit(model, x_train, y_train, target=8)

The mask keeps ``round(area·H·W)`` pixels (channels summed), only inside ``within`` when given (the
surface an attacker may cover, e.g. a face box or a sign). Unlike the patch of Brown et al. (2017),
a sticker found this way stays where it was found: it is a universal texture for images whose object
sits in the same place (centred digits, aligned faces, a sign filling the crop), and it moves with the
object under the scene's transformations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from advrobust.attacks.eval_mode import evaluation_mode
from advrobust.attacks.inputs import check_positive_int
from advrobust.attacks.patch import images_to_attack, parameters_frozen
from advrobust.errors import InputError
from advrobust.masks import check_mask
from advrobust.runtime import RuntimePolicy
from advrobust.tasks import Task, resolve_task
from advrobust.tensors import clamp_unit
from advrobust.transforms import Identity, Transform
from advrobust.transforms.base import check_images, check_range


def sticker_mask(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    target: int | None = None,
    *,
    area: float = 0.1,
    transform: Transform | None = None,
    within: Tensor | None = None,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 0.05,
    l1_weight: float = 1e-3,
    seed: int = 0,
    task: Task | str | None = None,
) -> Tensor:
    """RP2's mask (see the module docstring): a ``1×1×H×W`` binary mask of ``round(area·H·W)`` pixels,
    from ``steps`` Adam steps (``lr``) on a sparse universal perturbation over batches of
    ``batch_size`` images of ``x`` under fresh draws of ``transform`` (default: none), with the L1
    weight ``l1_weight`` per pixel. ``target``: a class (a classifier's images of it are left out;
    a segmenter: the class of every pixel; a detector: ``0`` makes objects vanish); ``None``:
    untargeted. ``within``: an ``H×W`` (or ``1×1×H×W``) binary mask the sticker must stay in.
    ``task``: the model's task (by default its own, else inferred from ``y``)."""
    check_images("sticker_mask", x)
    c, h, w = x.shape[1:]
    area = check_range("sticker_mask", "area", area, 1.0)
    k = round(area * h * w)
    allowed = torch.ones(h, w, dtype=torch.bool, device=x.device)
    if within is not None:
        allowed = check_mask(within, (1, 1, h, w), owner="within").amax(dim=(0, 1)).bool().to(x.device)
    if not 0 < k <= int(allowed.sum()):
        raise InputError(f"sticker_mask: area {area:g} is {k} pixels, but the allowed surface has "
                         f"{int(allowed.sum())}: choose an area in (0, {float(allowed.sum()) / (h * w):.3g}]")
    task = resolve_task(task, model, y)
    y = task.labels(y, x)
    keep = images_to_attack(model, x, y, target, task)
    x, y = x[keep], y[keep]
    steps = check_positive_int("sticker_mask", "steps", steps)
    batch = min(check_positive_int("sticker_mask", "batch_size", batch_size), x.shape[0])
    transform = Identity() if transform is None else transform
    objective = task.objective("ce")
    generator = torch.Generator(device=x.device).manual_seed(int(seed))
    runner = RuntimePolicy().runner(model)  # the CPU fast path where it applies: the same function, faster
    delta = torch.zeros(1, c, h, w, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=check_range("sticker_mask", "lr", lr))
    l1_weight = check_range("sticker_mask", "l1_weight", l1_weight)
    with evaluation_mode(model), parameters_frozen(model):
        for _ in range(steps):
            index = torch.randint(0, x.shape[0], (batch,), generator=generator, device=x.device)
            xb, yb = x[index], y[index]
            masked = delta * allowed
            perturbed = clamp_unit(xb + masked)
            with torch.no_grad():
                scene = transform.sample(perturbed, generator)
                if task.dense:
                    yb = task.follow(yb, transform, scene, (h, w))
            tb = None if target is None else task.class_target(int(target), yb)
            attack_term = objective(runner.forward(transform.apply(perturbed, scene)), yb, tb).mean()
            loss = -attack_term + l1_weight * masked.abs().sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    strength = delta.detach().abs().sum(dim=(0, 1)).masked_fill(~allowed, -1.0)
    mask = torch.zeros(h * w, dtype=x.dtype, device=x.device)
    mask[strength.flatten().topk(k).indices] = 1.0
    return mask.view(1, 1, h, w)
