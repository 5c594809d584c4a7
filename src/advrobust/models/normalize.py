"""Normalization inside the model, so that every model takes ``[0, 1]`` pixels (docs/architecture.md).

Attacks and threat models work in pixel space; a model trained on standardized inputs
``(x − mean) / std`` carries that step as its first layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from advrobust.errors import InputError


class Normalize(nn.Module):
    """``x ↦ (x − mean) / std`` per channel; ``mean`` and ``std`` are buffers (saved with the weights)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() != std_t.numel() or mean_t.numel() == 0:
            raise InputError(f"mean and std need one value per channel, got {mean_t.numel()} and {std_t.numel()}")
        if bool((std_t <= 0).any()):
            raise InputError(f"std must be positive, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Normalized(nn.Module):
    """A model preceded by :class:`Normalize`: takes ``[0, 1]`` pixels, gives ``model``'s logits."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


def with_normalization(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> Normalized:
    """Wrap ``model`` so that it takes ``[0, 1]`` pixels and standardizes them itself."""
    return Normalized(model, mean, std)
