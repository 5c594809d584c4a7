"""Expectation over transformation: a runner whose every pass averages several draws of the model.

A randomized model (input noise, random resizing, dropout at inference) or a model seen through
random input transformations gives a different output, and a different gradient, on every call.
EOT (Athalye, Engstrom, Ilyas & Kwok 2018, "Synthesizing robust adversarial examples", eq. 1;
Athalye, Carlini & Wagner 2018, §4.1.2) attacks the expectation instead:

    ∇_x E_t[L(f(t(x)), y)]  ≈  (1/n) Σ_{i=1..n} ∇_x L(f(t_i(x)), y),   t_i drawn afresh

:class:`EOT` wraps any runner and averages ``draws`` of its passes: the scores (for the attack's own
decisions), the objective and its input gradient. Every attack gets it through its ``eot`` count
(AutoAttack's ``eot_iter``), with no change to its loop. Each pass costs ``draws`` queries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from advrobust.errors import InputError
from advrobust.runtime.runner import Runner


class EOT(Runner):
    """``inner``'s passes averaged over ``draws`` fresh draws of the model's randomness."""

    def __init__(self, inner: Runner, draws: int) -> None:
        if int(draws) < 1:
            raise InputError(f"eot must be a positive number of draws, got {draws}")
        super().__init__(inner.model)
        self.inner = inner
        self.draws = int(draws)
        self.passes = self.draws * inner.passes

    def forward(self, x: Tensor) -> Any:
        total = self.inner.forward(x)
        for _ in range(self.draws - 1):
            total = total + self.inner.forward(x)
        return total / self.draws

    def exact(self, x: Tensor) -> Any:
        return self.inner.exact(x)

    def forward_and_grad(self, x: Tensor, objective: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        z, value, grad = self.inner.forward_and_grad(x, objective)
        for _ in range(self.draws - 1):
            z_i, value_i, grad_i = self.inner.forward_and_grad(x, objective)
            z, value, grad = z + z_i, value + value_i, grad + grad_i
        return z / self.draws, value / self.draws, grad / self.draws
