"""A model seen through a random transformation: the bridge from a distribution to EOT.

``TransformedModel(model, t)`` is the randomized model ``x ↦ f(t(x))`` with a fresh ``t ∼ T`` at
every call (drawn from its own seeded generator). An attack run on it follows the gradient of the
expectation over transformations of Athalye, Engstrom, Ilyas & Kwok (2018, eq. 1) one draw per step
(stochastic gradient ascent on ``E_t[L(f(t(x)))]``); averaging ``n`` draws per step is the EOT count
of the attack runtime, which treats this like any other randomized model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advrobust.errors import InputError
from advrobust.transforms.base import Transform


class TransformedModel(nn.Module):
    """``forward(x) = (1/n) Σ_{k ≤ n} model(t_k(x))``: the logits averaged over ``draws = n`` fresh
    transformations per point and call (one batched pass of ``n·N`` rows; ``n = 1``: the randomized
    model itself). ``seed`` seeds the draws (``reseed()`` restarts them)."""

    def __init__(self, model: nn.Module, transform: Transform, draws: int = 1, seed: int = 0) -> None:
        super().__init__()
        if isinstance(draws, bool) or int(draws) != draws or draws < 1:
            raise InputError(f"TransformedModel: draws must be an integer >= 1, got {draws!r}")
        self.draws = int(draws)
        if not isinstance(transform, Transform):
            raise InputError(f"TransformedModel takes an advrobust.transforms.Transform, got {transform!r}")
        self.model = model
        self.transform = transform
        self.seed = int(seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)

    def reseed(self) -> None:
        self.generator.manual_seed(self.seed)

    def forward(self, x: Tensor) -> Tensor:
        if self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device)
            self.generator.manual_seed(self.seed)
        rows = x.repeat(self.draws, *([1] * (x.dim() - 1)))  # draw-major: draw k of point i at k·N + i
        z = self.model(self.transform(rows, self.generator))
        return z.reshape(self.draws, x.shape[0], *z.shape[1:]).mean(dim=0)
