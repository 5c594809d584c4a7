"""Checks of what an attack is given, before any work, with one-line messages that say how to fix it.

:func:`check_inputs` (the batch, the labels and targets, the model's device) and :func:`check_scores`
(what the model returned for the clean batch) are what a classification model needs; the
hyper-parameter checks (:func:`check_positive_int`, :func:`check_nonnegative`) serve every attack's
constructor.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from advrobust.attacks.access import model_access
from advrobust.errors import InputError
from advrobust.runtime.runner import Model


def model_device(model: Model) -> torch.device | None:
    """The device of a torch module's first parameter or buffer (``None`` for other callables)."""
    if isinstance(model, nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return None


def _as_labels(name: str, t: Any, n: int, device: torch.device) -> Tensor:
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


def check_inputs(
    model: Model, x: Any, y: Any, target: Any = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate an attack's inputs; return them as tensors (labels as ``int64``)."""
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
    n = x.shape[0]
    y = _as_labels("y", y, n, x.device)
    if target is not None:
        target = _as_labels("target", target, n, x.device)
        same = target == y
        if bool(same.any()):
            i = int(same.nonzero()[0])
            raise InputError(f"target equals the label at index {i} (class {int(y[i])}): a target must differ")
    return x, y, target


def check_scores(z: Tensor, y: Tensor, target: Tensor | None, model: Model) -> None:
    """Check the model's scores ``z`` for the clean batch against the labels and targets: at least two
    classes, labels in range, and a warning for outputs that look like probabilities."""
    k = z.shape[1]
    if k < 2:
        raise InputError(f"the model returns {k} score per input: a classifier needs at least 2 classes")
    for name, labels in (("y", y), ("target", target)):
        if labels is not None and labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
            raise InputError(f"{name} holds class indices outside [0, {k - 1}] for a model with {k} classes")
    if model_access(model) == "gradients" and z.numel():
        rows = z.detach()
        if bool((rows >= 0).all()) and bool(((rows.sum(dim=1) - 1).abs() < 1e-3).all()):
            warnings.warn(
                "the model's outputs are non-negative and sum to 1: they look like probabilities. "
                "Gradient attacks need logits; remove the final softmax from the model.",
                stacklevel=4,
            )


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
