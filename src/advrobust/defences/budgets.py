"""The attacked side of an interval: one attack per budget, in increasing order, on the points left.

A point an attack broke within a budget stays broken at every larger one (the smaller ball, or the
smaller square patch, lies inside the larger), so each budget attacks only the points that are
clean-correct and still unbroken; budget 0 attacks nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from advrobust.progress import Progress

#: ``attack(e, budget, todo)``: attack the points ``todo`` within ``budget`` (the ``e``-th), return
#: which of them it broke (a bool per point of ``todo``)
AttackAt = Callable[[int, float, Tensor], Tensor]


def attack_increasing(
    budgets: list[float], correct: Tensor, attack: AttackAt, progress: Progress, title: str
) -> tuple[Tensor, list[int]]:
    """``(broken, attacked_points)``: ``broken[e, i]`` whether point ``i`` was broken within
    ``budgets[e]`` or a smaller budget; ``attacked_points[e]`` how many points were attacked there.
    ``budgets`` must be sorted."""
    n = correct.shape[0]
    broken = torch.zeros(len(budgets), n, dtype=torch.bool, device=correct.device)
    hit = torch.zeros(n, dtype=torch.bool, device=correct.device)
    attacked_points: list[int] = []
    with progress.task(title, total=len(budgets)) as task:
        for e, budget in enumerate(budgets):
            todo = (correct & ~hit).nonzero().squeeze(1)
            attacked_points.append(int(todo.numel()) if budget > 0 else 0)
            if todo.numel() and budget > 0:
                hit[todo] = attack(e, budget, todo)
            broken[e] = hit
            task.advance(1)
    return broken, attacked_points


def row_means(mask: Tensor) -> list[float]:
    """The fraction of points set in each row of an ``E×N`` mask (0 for no points): accuracy per budget."""
    return mask.float().mean(dim=1).tolist() if mask.shape[1] else [0.0] * mask.shape[0]
