"""A failed training run, recognized from its per-epoch history: never a silent success.

Three failures are told apart, each with the likely fix:

* **divergence**: the training loss is not finite (NaN or infinite): the learning rate is far too high;
* **no learning**: at the end of the ε warm-up or later, validation accuracy at chance,
  ``≤ 1/K + chance_margin``, for ``patience`` epochs in a row or at the last epoch. This is how
  adversarial training at a large ε from the first step fails (PGD-AT at ε = 0.3 with SGD at lr
  0.05 and no warm-up: loss 2.30 = ln 10 from the first epoch to the last, 10 % accuracy).
  Without a validation set: training accuracy at chance, or a training loss that has not fallen
  below ``loss_fraction·ln K`` (the cross-entropy of a uniform guess over ``K`` classes), for
  standard training only (under attack both stay near chance for a while in a healthy run);
* **robust collapse**: past the warm-up, robust validation accuracy more than ``robust_drop``
  below its best (Wong, Rice & Kolter 2020's threshold for catastrophic overfitting, 0.2).

During the warm-up the first two wait: the budget is still growing and the network may be slow to
leave chance; a non-finite loss is a failure at any epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from advrobust.training.history import EpochRecord


@dataclass(frozen=True)
class Failure:
    """Why a run failed and what to change, each in a short phrase; ``str()`` joins them in one line."""

    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.reason}; likely fix: {self.fix}"


@dataclass(frozen=True)
class CollapseRule:
    """The thresholds of :func:`detect` (see the module docstring)."""

    chance_margin: float = 0.05
    loss_fraction: float = 0.98
    robust_drop: float = 0.2
    patience: int = 2


def _stalled(record: EpochRecord, num_classes: int, rule: CollapseRule) -> str | None:
    """Why this epoch shows no learning, or ``None``: validation accuracy at chance, or without a
    validation set training accuracy at chance or a training loss no lower than a uniform guess's."""
    if record.val_acc is not None:
        if record.val_acc <= 1 / num_classes + rule.chance_margin:
            return f"validation accuracy {record.val_acc:.1%} is at chance (1/{num_classes})"
        return None
    if record.train_acc <= 1 / num_classes + rule.chance_margin:
        return f"training accuracy {record.train_acc:.1%} is at chance (1/{num_classes})"
    uniform = math.log(num_classes)
    if record.train_loss >= rule.loss_fraction * uniform:
        return (f"the training loss {record.train_loss:.3f} is no lower than a uniform guess's "
                f"(ln {num_classes} = {uniform:.3f})")
    return None


def detect(
    records: Sequence[EpochRecord], *, epochs: int, num_classes: int, warmup: float = 0.0,
    lr: float | None = None, adversarial: bool = False, rule: CollapseRule = CollapseRule(),
) -> Failure | None:
    """The failure the history shows at its last record, or ``None`` while training is healthy.

    ``epochs``: the planned number; ``warmup``: the fraction of training over which ε ramps up;
    ``lr``: the peak learning rate (to suggest a lower one); ``adversarial``: the training loss and
    accuracy are measured under attack, which leaves them near chance for a while in a healthy run,
    so without a validation set (clean accuracy) no-learning is not judged.
    """
    if not records:
        return None
    last = records[-1]
    lower = f"lower the learning rate (e.g. lr {lr / 10:g})" if lr is not None else "lower the learning rate"
    if not math.isfinite(last.train_loss):
        return Failure(f"the training loss is {last.train_loss} at epoch {last.epoch}", lower)
    if last.epoch < warmup * epochs:
        return None
    recent = records[-rule.patience:]
    judged = [r for r in recent if r.val_acc is not None or not adversarial]
    stalled = [_stalled(r, num_classes, rule) for r in judged]
    complete = len(recent) == rule.patience or last.epoch == epochs
    if judged and len(judged) == len(recent) and all(stalled) and complete:
        fix = f"{lower}, or for adversarial training ramp eps up over part of training (warmup 0.3)"
        return Failure(f"{stalled[-1]} after epoch {last.epoch}: the network did not learn", fix)
    robust = [(r.val_robust_acc, r.epoch) for r in records
              if r.val_robust_acc is not None and r.epoch >= warmup * epochs]
    if robust and robust[-1][1] == last.epoch:
        best, best_epoch = max(robust)
        if best - robust[-1][0] > rule.robust_drop:
            return Failure(
                f"robust validation accuracy fell from {best:.1%} (epoch {best_epoch}) to "
                f"{robust[-1][0]:.1%} (epoch {last.epoch}): catastrophic overfitting (Wong et al. 2020)",
                f"{lower}, fewer epochs, or multi-step training (pgd-at)",
            )
    return None
