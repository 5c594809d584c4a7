"""What attacks return: :class:`AttackResult` per call, :class:`SweepResult` per sweep over budgets."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class AttackResult:
    """What an attack returns, one entry per point of the batch.

    ``x_adv``: the adversarial inputs (for a point that was not broken: the best attempt of a
    fixed-budget attack, the clean input of a minimum-norm attack). ``success``: confirmed by
    re-running the model. ``norm``: ``‖x_adv − x‖_p`` (minimum-norm attacks: ``inf`` where
    ``success`` is false). ``queries``: forward/gradient evaluations spent on the point.
    """

    x_adv: Tensor
    success: Tensor
    norm: Tensor
    queries: Tensor
    target: Tensor | None = None
    #: per-point diagnostics an attack reports besides the contract's fields (DAG: iterations, flipped)
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self) else 0.0

    def select(self, index: Tensor) -> AttackResult:
        """The results of a subset of points (a boolean mask or indices)."""
        return AttackResult(
            x_adv=self.x_adv[index],
            success=self.success[index],
            norm=self.norm[index],
            queries=self.queries[index],
            target=None if self.target is None else self.target[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )


@dataclass
class SweepResult:
    """Success of one attack at several budgets: ``success[e, i]`` for ``epsilons[e]``, point ``i``.

    ``norm`` is the per-point norm of the smallest successful perturbation for a minimum-norm attack
    (``inf`` where none was found) and ``None`` for a fixed-budget attack.
    """

    epsilons: Tensor
    success: Tensor
    queries: Tensor
    norm: Tensor | None = None
