"""Expectation over transformation: a runner whose every pass averages several draws of the model.

A randomized model (input noise, random resizing, dropout at inference) or a model seen through
random input transformations gives a different output, and a different gradient, on every call.
EOT (Athalye, Engstrom, Ilyas & Kwok 2018, "Synthesizing robust adversarial examples", eq. 1;
Athalye, Carlini & Wagner 2018, §4.1.2) attacks the expectation instead. What is averaged over the
``n`` fresh draws ``t_i`` is a choice, :class:`Draws`' ``average``:

* ``"objective"`` (the default; AutoAttack's ``eot_iter``): the objective and its input gradient,
  ``∇_x (1/n) Σ_i L(f(t_i(x)), y)``;
* ``"logits"``: the scores, ``∇_x L((1/n) Σ_i f(t_i(x)), y)`` (the form of Athalye et al.'s own
  EOT code for classifiers);
* ``"probabilities"``: the softmax probabilities, as log-probabilities,
  ``∇_x L(log (1/n) Σ_i softmax f(t_i(x)), y)``: for cross-entropy, ``−log E_t[p_y]``, the
  probability that one fresh draw is classified ``y``.

Averaging an unbounded objective (cross-entropy) lets a few draws pushed far past the decision
boundary outweigh the draws that are not yet adversarial; averaging logits or probabilities first
bounds each draw's pull. Measured (``benchmarks/bench_eot_average.py``: the default MNIST CNN, PGD
l∞ 0.18, 30 steps × 8 draws, rotation ±15°, translation ±8%, noise σ = 0.05, 100 digits × 50 fresh
draws): with cross-entropy the objective average keeps 49.8% of its examples adversarial, the logit
average 54.6%, the probability average 55.0% (plain PGD with as many passes: 46.3%); with the
margin loss the objective average is as good (55.0%, logits 53.8%, probabilities 51.2%).

:class:`EOT` wraps any runner; every attack gets it through its ``eot`` argument (a count, or a
:class:`Draws`), with no change to its loop. Each pass costs ``draws`` queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.runtime.runner import Runner

AVERAGES = ("objective", "logits", "probabilities")


@dataclass(frozen=True)
class Draws:
    """An attack's ``eot`` setting: ``draws`` fresh draws per pass, combined by ``average`` (one
    of :data:`AVERAGES`; see the module docstring). ``eot=8`` is ``Draws(8)``."""

    draws: int
    average: str = "objective"

    def __post_init__(self) -> None:
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 1:
            raise InputError(f"eot is the number of draws each pass averages (1: no EOT), got {self.draws!r}")
        if self.average not in AVERAGES:
            raise InputError(f"eot average must be one of {', '.join(AVERAGES)}; got {self.average!r}")


def as_draws(eot: int | Draws) -> Draws:
    """An attack's ``eot`` argument as :class:`Draws` (a one-line error for anything else)."""
    if isinstance(eot, Draws):
        return eot
    if isinstance(eot, bool) or not isinstance(eot, int):
        raise InputError(f"eot is the number of draws each pass averages (1: no EOT) or a Draws, got {eot!r}")
    return Draws(eot)


class EOT(Runner):
    """``inner``'s passes over ``draws`` fresh draws of the model's randomness, combined by
    ``average`` (``"objective"``, ``"logits"`` or ``"probabilities"``)."""

    def __init__(self, inner: Runner, draws: int, average: str = "objective") -> None:
        spec = Draws(draws, average)
        super().__init__(inner.model)
        self.inner = inner
        self.draws = spec.draws
        self.average = spec.average
        self.passes = self.draws * inner.passes

    def _combine(self, outputs: list[Tensor]) -> Tensor:
        """The scores of one pass from the draws' scores: their mean, or the log of their mean
        softmax (averaged probabilities)."""
        if self.average == "probabilities":
            log_p = torch.stack([z.log_softmax(dim=1) for z in outputs])
            return torch.logsumexp(log_p, dim=0) - torch.log(torch.tensor(float(len(outputs)), dtype=log_p.dtype))
        return torch.stack(outputs).mean(dim=0)

    def forward(self, x: Tensor) -> Any:
        return self._combine([self.inner.forward(x) for _ in range(self.draws)])

    def exact(self, x: Tensor) -> Any:
        return self.inner.exact(x)

    def forward_and_grad(self, x: Tensor, objective: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if self.average == "objective":
            z, value, grad = self.inner.forward_and_grad(x, objective)
            for _ in range(self.draws - 1):
                z_i, value_i, grad_i = self.inner.forward_and_grad(x, objective)
                z, value, grad = z + z_i, value + value_i, grad + grad_i
            return z / self.draws, value / self.draws, grad / self.draws
        return Runner.forward_and_grad(self, x, objective)  # one graph through the combined scores
