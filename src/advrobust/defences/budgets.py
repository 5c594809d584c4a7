"""The attacked side of an interval: one attack per budget, in increasing order, on the points left.

A point an attack broke within a budget stays broken at every larger one (the smaller ball, or the
smaller square patch, lies inside the larger), so each budget attacks only the points that are
clean-correct and still unbroken; budget 0 attacks nothing. :class:`BoundsInterval` is what both
intervals return (randomized smoothing in :mod:`~advrobust.defences.interval`, column smoothing in
:mod:`~advrobust.defences.patch_interval`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

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


class _Certificate(Protocol):
    prediction: Tensor

    def __len__(self) -> int: ...

    @property
    def samples_per_second(self) -> float: ...


CertificateT = TypeVar("CertificateT", bound=_Certificate)


@dataclass(kw_only=True)
class BoundsInterval(Generic[CertificateT]):
    """Per budget ``epsilons[e]`` (an l2 radius, a patch side): ``certified[e] ≤ robust accuracy ≤
    attacked[e]`` on the same points, with the ``certificate`` behind the lower bound. Per point:
    ``broken[e, i]`` (the attack broke it within ``epsilons[e]``) and ``norm[i]``, the smallest
    budget or norm at which it was broken (``inf``: never). ``attacked_points[e]``: how many points
    the attack ran on at ``epsilons[e]``; ``queries_per_point``: base-classifier evaluations per
    attacked point; ``seconds``: per phase."""

    epsilons: list[float]
    certified: list[float]
    attacked: list[float]
    clean_accuracy: float
    certificate: CertificateT
    broken: Tensor
    norm: Tensor
    attack: str
    attacked_points: list[int] = field(default_factory=list)
    queries_per_point: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def prediction(self) -> Tensor:
        """The smoothed classifier's class per point on the clean images."""
        return self.certificate.prediction

    def rows(self) -> list[dict[str, float]]:
        """One row per budget: ``eps``, ``certified``, ``attacked`` and their ``gap``."""
        return [
            {"eps": e, "certified": c, "attacked": a, "gap": a - c}
            for e, c, a in zip(self.epsilons, self.certified, self.attacked, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        """The summary (what the results store and the CLI's JSON keep): no per-point tensors."""
        return {
            "points": len(self.certificate),
            "clean_accuracy": self.clean_accuracy,
            "rows": self.rows(),
            "attack": self.attack,
            "seconds": self.seconds,
            "samples_per_second": self.certificate.samples_per_second,
        }
