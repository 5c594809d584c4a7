"""Randomized defences: models whose output for one input changes from call to call.

Each draws fresh randomness on every call (from ``generator`` if given, else torch's global
generator) and stays random in eval mode: that is the defence. One-sample gradients of such a
model are noisy and one-sample verdicts lucky (Athalye, Carlini & Wagner 2018, §4.1.2); evaluate
them with expectation over transformation (an attack's ``eot`` count, the ``rand`` suite).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.errors import InputError
from advrobust.tensors import clamp_unit


class _Randomized(nn.Module):
    """A model behind a random input or feature transformation."""

    def __init__(self, model: nn.Module, generator: torch.Generator | None) -> None:
        super().__init__()
        self.model = model
        self.generator = generator


class GaussianNoise(_Randomized):
    """``x ↦ model(clip(x + δ))`` with ``δ ~ N(0, σ² I)`` drawn anew on each call (a randomized-
    smoothing base classifier queried once: Cohen, Rosenfeld & Kolter 2019, eq. 1, one sample)."""

    def __init__(self, model: nn.Module, sigma: float = 0.3, *, generator: torch.Generator | None = None) -> None:
        if not sigma > 0:
            raise InputError(f"GaussianNoise needs sigma > 0, got {sigma}")
        super().__init__(model, generator)
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return self.model(clamp_unit(x + self.sigma * noise))

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class RandomResizePad(_Randomized):
    """Random resizing and padding (Xie, Wang, Zhang, Ren & Yuille 2018, "Mitigating adversarial
    effects through randomization", §3): each image is shrunk by a random factor
    ``s ~ U[min_scale, 1]`` (bilinear) and placed at a random position of a zero canvas of its own
    size, so the model's input size is unchanged. One ``grid_sample`` per batch, differentiable in
    ``x``; every image draws its own size and position."""

    def __init__(
        self, model: nn.Module, min_scale: float = 0.8, *, generator: torch.Generator | None = None
    ) -> None:
        if not 0 < min_scale <= 1:
            raise InputError(f"RandomResizePad needs 0 < min_scale <= 1, got {min_scale}")
        super().__init__(model, generator)
        self.min_scale = float(min_scale)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise InputError(f"RandomResizePad takes images of shape (N, C, H, W), got {tuple(x.shape)}")
        n = x.shape[0]
        u = torch.rand(n, 3, generator=self.generator, dtype=x.dtype, device=x.device)
        scale = self.min_scale + (1 - self.min_scale) * u[:, 0]
        # the shrunk image's centre, anywhere that keeps it on the canvas (normalized coordinates)
        room = 1 - scale
        shift = (2 * u[:, 1:] - 1) * room[:, None]
        theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = 1 / scale
        theta[:, 1, 1] = 1 / scale
        theta[:, :, 2] = -shift / scale[:, None]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return self.model(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False))

    def extra_repr(self) -> str:
        return f"min_scale={self.min_scale}"


#: the activations after which InferenceDropout drops units when no modules are named
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh)


class InferenceDropout(_Randomized):
    """Dropout kept on at inference (Monte-Carlo dropout used as a defence, e.g. Feinman et al.
    2017): after every activation module of a copy of ``model`` (or the module types in
    ``after``), units are zeroed with probability ``p`` and the rest scaled by ``1/(1−p)``,
    in eval mode too. The model passed in is not changed."""

    def __init__(
        self,
        model: nn.Module,
        p: float = 0.3,
        *,
        after: tuple[type[nn.Module], ...] = _ACTIVATIONS,
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0 < p < 1:
            raise InputError(f"InferenceDropout needs 0 < p < 1, got {p}")
        super().__init__(copy.deepcopy(model), generator)
        self.p = float(p)
        layers = [m for m in self.model.modules() if isinstance(m, after)]
        if not layers:
            raise InputError(
                "InferenceDropout found no activation module to drop units after (a model written with "
                "F.relu?): name the module types with after=(...)"
            )
        for layer in layers:
            layer.register_forward_hook(self._drop)

    def _drop(self, module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
        keep = torch.rand(out.shape, generator=self.generator, dtype=out.dtype, device=out.device) >= self.p
        return out * keep / (1 - self.p)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"
