"""Checks of what an attack is given, before any work, with one-line messages that say how to fix it.

:func:`check_inputs` (the batch, the labels and targets, the model's device) and :func:`check_scores`
(what the model returned for the clean batch) are what a classification model needs; the
hyper-parameter checks (:func:`check_positive_int`, :func:`check_nonnegative`) serve every attack's
constructor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advrobust.attacks.access import model_access
from advrobust.errors import InputError
from advrobust.runtime.runner import Model
from advrobust.tasks import CLASSIFICATION, Task


def model_device(model: Model) -> torch.device | None:
    """The device of a torch module's first parameter or buffer (``None`` for other callables)."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return None


def check_inputs(
    model: Model, x: Any, y: Any, target: Any = None, task: Task = CLASSIFICATION
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate an attack's inputs; return them as tensors (``y`` and ``target`` in the task's form,
    :mod:`advrobust.tasks`: for classification ``int64`` class ids)."""
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
    device = model_device(model)
    if device is not None and device != x.device:
        raise InputError(f"x is on {x.device} but the model is on {device}: move them to one device")
    y = task.labels(y, x)
    if target is not None:
        target = task.targets(target, y, x)
    return x, y, target


def check_scores(z: Tensor, y: Tensor, target: Tensor | None, model: Model, task: Task = CLASSIFICATION) -> None:
    """Check the model's output ``z`` for the clean batch against the labels and targets (the task's
    checks: for a classifier at least two classes, labels in range, and a warning for outputs that
    look like probabilities)."""
    task.check_classes(z, y, target, model_access(model) == "gradients")


def check_positive_int(owner: str, name: str, value: int, minimum: int = 1) -> int:
    """``value`` as an int, if it is an integer ``>= minimum`` (``owner`` names the attack in the error)."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise InputError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_nonnegative(owner: str, name: str, value: float | None) -> float | None:
    """``value`` as a float, if it is finite and ``>= 0`` (``None`` passes through)."""
    if value is None:
        return None
    if not float(value) >= 0 or value == float("inf"):
        raise InputError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)
