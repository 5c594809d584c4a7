"""Classification: the model returns ``N×K`` logits, ``y`` and the target are class ids ``N``.

A point is adversarial when ``argmax z ≠ y`` (untargeted) or ``argmax z = t`` (targeted); the
objectives are those of :mod:`advrobust.losses` (cross-entropy, C&W margin, DLR).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.losses import Objective, get_loss, is_adversarial
from advrobust.tasks.base import Task


def class_ids(name: str, t: Any, n: int, device: torch.device) -> Tensor:
    """``t`` checked as ``N`` integer class ids on ``device``, as ``int64``."""
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t, device=device)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a tensor of class indices, got {type(t).__name__}") from None
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise InputError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise InputError(f"{name} must have shape ({n},), one class index per input; got {tuple(t.shape)}")
    if t.device != device:
        raise InputError(f"{name} is on {t.device} but x is on {device}: move them to one device")
    return t.long()


def check_class_range(k: int, **labels: Tensor | None) -> None:
    """Every class id in ``labels`` (name -> tensor, ``None`` skipped) lies in ``[0, k)``."""
    for name, t in labels.items():
        if t is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            raise InputError(f"{name} holds class indices outside [0, {k - 1}] for a model with {k} classes")


class Classification(Task):
    """Image classification (the seed's setting): logits ``N×K``, labels ``N``."""

    name = "classification"

    def labels(self, y: Any, x: Tensor) -> Tensor:
        return class_ids("y", y, x.shape[0], x.device)

    def targets(self, target: Any, y: Tensor, x: Tensor) -> Tensor:
        target = class_ids("target", target, x.shape[0], x.device)
        same = target == y
        if bool(same.any()):
            i = int(same.nonzero()[0])
            raise InputError(f"target equals the label at index {i} (class {int(y[i])}): a target must differ")
        return target

    def check_output(self, out: Any, x: Tensor) -> Tensor:
        if not isinstance(out, Tensor):
            out = torch.as_tensor(out, device=x.device)
        if out.dim() != 2 or out.shape[0] != x.shape[0]:
            raise InputError(
                f"the model must return scores of shape (N, classes); for an input of shape "
                f"{tuple(x.shape)} it returned {tuple(out.shape)}"
            )
        return out

    def check_classes(self, z: Tensor, y: Tensor, target: Tensor | None, gradients: bool = True) -> None:
        k = z.shape[1]
        if k < 2:
            raise InputError(f"the model returns {k} score per input: a classifier needs at least 2 classes")
        check_class_range(k, y=y, target=target)
        if gradients and z.numel():
            rows = z.detach()
            if bool((rows >= 0).all()) and bool(((rows.sum(dim=1) - 1).abs() < 1e-3).all()):
                warnings.warn(
                    "the model's outputs are non-negative and sum to 1: they look like probabilities. "
                    "Gradient attacks need logits; remove the final softmax from the model.",
                    stacklevel=5,
                )

    def is_adversarial(self, z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return is_adversarial(z, y, target)

    def objective(self, loss: str | Objective) -> Objective:
        return get_loss(loss)

    def class_target(self, c: int, y: Tensor) -> Tensor:
        return torch.full_like(y, int(c))
