"""Attack objectives, per point (no reduction), always to be *maximized* by the attack.

Each objective takes logits ``z`` (``N×K``, or ``N×K×…`` with labels ``N×…``: one value per pixel),
labels ``y`` and, for a targeted attack, targets ``t``:

* ``cross_entropy`` — untargeted ``CE(z, y)``; targeted ``−CE(z, t)`` (Goodfellow et al. 2015).
* ``margin`` — Carlini & Wagner (2017), their ``f_6``: untargeted ``max_{j≠y} z_j − z_y``; targeted
  ``z_t − max_{j≠t} z_j``; positive exactly when the attack has succeeded. ``kappa`` caps it (the
  confidence of C&W: no reward beyond ``kappa``).
* ``dlr`` — the Difference of Logits Ratio of Croce & Hein (2020, eq. 6 and its targeted form, eq. 7):
  untargeted ``−(z_y − max_{j≠y} z_j) / (z_π1 − z_π3)``, targeted
  ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)``, with ``π`` the logits sorted in decreasing order;
  invariant to shifting and scaling the logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from advrobust.errors import InputError

Objective = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
_DLR_EPS = 1e-12


def _other_max(z: Tensor, cls: Tensor) -> Tensor:
    """``max_{j ≠ cls} z_j`` per row."""
    masked = z.scatter(1, cls[:, None], float("-inf"))
    return masked.amax(dim=1)


def _logit(z: Tensor, cls: Tensor) -> Tensor:
    return z.gather(1, cls[:, None]).squeeze(1)


def cross_entropy(z: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-point cross-entropy: ``CE(z, y)`` untargeted, ``−CE(z, t)`` targeted."""
    if target is None:
        return F.cross_entropy(z, y, reduction="none")
    return -F.cross_entropy(z, target, reduction="none")


def margin(z: Tensor, y: Tensor, target: Tensor | None = None, kappa: float = float("inf")) -> Tensor:
    """C&W margin, ``> 0`` iff the attack succeeded; capped at ``kappa``."""
    if target is None:
        value = _other_max(z, y) - _logit(z, y)
    else:
        value = _logit(z, target) - _other_max(z, target)
    return value.clamp(max=kappa)


def dlr(z: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020); needs at least 3 (targeted: 4) classes."""
    k = z.shape[1]
    need = 3 if target is None else 4
    if k < need:
        raise InputError(f"the DLR loss needs at least {need} classes, the model has {k}; use 'ce' or 'margin'")
    top = z.sort(dim=1, descending=True).values
    if target is None:
        return -(_logit(z, y) - _other_max(z, y)) / (top[:, 0] - top[:, 2] + _DLR_EPS)
    denom = top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + _DLR_EPS
    return -(_logit(z, y) - _logit(z, target)) / denom


LOSSES: dict[str, Objective] = {"ce": cross_entropy, "margin": margin, "dlr": dlr}


def get_loss(loss: str | Objective) -> Objective:
    """An objective by name (``"ce"``, ``"margin"``, ``"dlr"``) or a callable passed through."""
    if callable(loss):
        return loss
    key = str(loss).lower().replace("-", "_")
    key = {"cross_entropy": "ce", "xent": "ce", "cw": "margin"}.get(key, key)
    if key not in LOSSES:
        raise InputError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)} or pass a callable")
    return LOSSES[key]


def is_adversarial(z: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per point: does ``argmax z`` differ from ``y`` (untargeted) / equal ``t`` (targeted)?"""
    pred = z.argmax(dim=1)
    return pred != y if target is None else pred == target



def more_than_half(votes: Tensor) -> Tensor:
    """Per point, from ``m×N`` boolean ``votes`` (one row per fresh draw of a randomized model): true
    on more than half of the draws. One lucky draw never decides (Athalye, Carlini & Wagner 2018,
    §4.1.2)."""
    return votes.sum(dim=0) * 2 > votes.shape[0]


def is_adversarial_by_majority(predictions: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per point, from the classes ``predictions`` (``m×N``) of ``m`` fresh draws of a randomized
    model: is it wrong on more than half of them (untargeted) / the target on more than half
    (targeted)?"""
    return more_than_half(predictions != y if target is None else predictions == target)
