"""Training with Gaussian noise augmentation, the base classifier of randomized smoothing.

Cohen, Rosenfeld & Kolter (2019), Section 4 ("we trained the base classifier with Gaussian data
augmentation at variance σ²"): each batch minimizes ``E_δ[L(θ, x + δ, y)]``, ``δ ~ N(0, σ² I)``,
estimated with one draw per point and step, so that ``f`` is accurate on the noisy inputs the smoothed
classifier ``g`` feeds it (:class:`advrobust.defences.GaussianSmoothing` with the same σ). The noise
is not clipped to the pixel box, as in the paper and as at certification. Draws come from torch's
global generator, which the engine seeds per epoch (a resumed run draws what the uninterrupted one
drew). Importing this module registers ``gaussian-noise`` in
:data:`advrobust.training.methods.METHODS`: ``fit(model, train, method="gaussian-noise")`` or
``create_method("gaussian-noise", sigma=0.5)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.errors import InputError
from advrobust.training.methods import METHODS


class GaussianNoise:
    """Cross-entropy on ``x + δ``, ``δ ~ N(0, σ² I)``: Cohen et al. (2019)'s training. ``sigma``
    (pixel units, inputs in ``[0, 1]``) should be the σ the model will be smoothed and certified
    with; the paper trains and certifies at σ ∈ {0.12, 0.25, 0.5, 1.0}."""

    name = "gaussian-noise"

    def __init__(self, sigma: float = 0.25) -> None:
        if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise InputError(f"gaussian-noise: sigma must be a positive number (e.g. 0.25), got {sigma!r}")
        self.sigma = float(sigma)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        logits = model(x + self.sigma * torch.randn_like(x))
        return F.cross_entropy(logits, y), logits

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "sigma": self.sigma}


METHODS["gaussian-noise"] = GaussianNoise
