"""Photometric transformations: brightness, contrast, colour, sensor noise and blur.

Each acts per point with its own draw, keeps the output in the box ``[0, 1]`` (a clamp: the
camera saturates) and is differentiable in ``x`` (almost everywhere: the clamp's gradient is 0 on
saturated pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from advrobust.tensors import clamp_unit, per_point
from advrobust.transforms.base import Params, Transform, check_range, uniform


@dataclass(frozen=True)
class Brightness(Transform):
    """``x + b`` with ``b ∈ [−delta, delta]`` per image (``0 ≤ delta ≤ 1``)."""

    delta: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", check_range("Brightness", "delta", self.delta, 1.0))

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        return {"b": uniform(x.shape[0], self.delta, x, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return clamp_unit(x + per_point(params["b"], x))

    def scaled(self, strength: float) -> Transform:
        return replace(self, delta=min(self.delta * check_range("Brightness", "strength", strength), 1.0))

    def describe(self) -> str:
        return f"brightness ±{self.delta:g}"


@dataclass(frozen=True)
class Contrast(Transform):
    """``m + c·(x − m)`` with ``c ∈ [1 − factor, 1 + factor]`` and ``m`` the image's mean
    (``0 ≤ factor ≤ 1``)."""

    factor: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", check_range("Contrast", "factor", self.factor, 1.0))

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        return {"c": 1 + uniform(x.shape[0], self.factor, x, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        c = per_point(params["c"], x)
        # m + c·(x − m) as (1 − c)·m + c·x: one pass over the pixels instead of three
        return clamp_unit(torch.addcmul((1 - c) * x.mean(dim=(1, 2, 3), keepdim=True), c, x))

    def scaled(self, strength: float) -> Transform:
        return replace(self, factor=min(self.factor * check_range("Contrast", "strength", strength), 1.0))

    def describe(self) -> str:
        return f"contrast ×[{1 - self.factor:g}, {1 + self.factor:g}]"


@dataclass(frozen=True)
class ColorJitter(Transform):
    """Per-channel gain and offset: ``g_c·x_c + o_c`` with ``g_c ∈ [1 − gain, 1 + gain]`` and
    ``o_c ∈ [−offset, offset]``, drawn per image and channel (a white-balance and colour-cast change;
    on one channel, a second brightness/contrast)."""

    gain: float = 0.1
    offset: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "gain", check_range("ColorJitter", "gain", self.gain, 1.0))
        object.__setattr__(self, "offset", check_range("ColorJitter", "offset", self.offset, 1.0))

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        n, c = x.shape[:2]
        gain = 1 + uniform(n * c, self.gain, x, generator).reshape(n, c, 1, 1)
        offset = uniform(n * c, self.offset, x, generator).reshape(n, c, 1, 1)
        return {"gain": gain, "offset": offset}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return clamp_unit(params["gain"] * x + params["offset"])

    def scaled(self, strength: float) -> Transform:
        s = check_range("ColorJitter", "strength", strength)
        return replace(self, gain=min(self.gain * s, 1.0), offset=min(self.offset * s, 1.0))

    def describe(self) -> str:
        return f"colour gain ±{self.gain:g}, offset ±{self.offset:g}"


@dataclass(frozen=True)
class GaussianNoise(Transform):
    """Sensor noise: ``x + σ·ε``, ``ε ∼ N(0, I)`` per pixel and channel (``0 ≤ std ≤ 1``)."""

    std: float = 0.02

    def __post_init__(self) -> None:
        object.__setattr__(self, "std", check_range("GaussianNoise", "std", self.std, 1.0))

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        return {"noise": torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) * self.std}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return clamp_unit(x + params["noise"])

    def scaled(self, strength: float) -> Transform:
        return replace(self, std=min(self.std * check_range("GaussianNoise", "strength", strength), 1.0))

    def describe(self) -> str:
        return f"noise σ={self.std:g}"


@dataclass(frozen=True)
class GaussianBlur(Transform):
    """Defocus: a Gaussian blur with ``σ ∈ [0, sigma]`` pixels per image (``0 ≤ sigma ≤ 5``),
    separable, edges replicated; ``σ = 0`` leaves the image unchanged."""

    sigma: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_range("GaussianBlur", "sigma", self.sigma, 5.0))

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
        return {"sigma": u * self.sigma}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return blur(x, params["sigma"], math.ceil(3 * self.sigma))

    def scaled(self, strength: float) -> Transform:
        return replace(self, sigma=min(self.sigma * check_range("GaussianBlur", "strength", strength), 5.0))

    def describe(self) -> str:
        return f"blur σ≤{self.sigma:g}px"


def blur(x: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Blur each image ``i`` of ``x`` with a Gaussian of ``sigma[i]`` pixels, truncated at ``radius``
    pixels, edges replicated. ``sigma = 0`` is the identity kernel. Differentiable, any number of
    times, in ``x`` and in ``sigma``.

    The blur is separable and linear; of three equal ways to compute it, the cheapest for the size
    (measured forward and backward on a CPU, one thread):

    * a small kernel on a large image (``2·K² ≤ n``, ``K = 2·radius + 1``, ``n`` the longer side):
      one depthwise convolution with the ``K×K`` outer product of the taps over the edge-padded
      image, ``K²`` multiplications per pixel in one vectorized pass (150×150, ``radius = 3``:
      12 ms against 15 ms for the matrices and 21 ms for ``2K`` shifted copies; 416×416: 39
      against 94 ms);
    * otherwise, on images up to ``_MATRIX_SIDE`` pixels: two batched products with banded ``n×n``
      matrices, ``B_h · x · B_wᵀ`` (the kernel, with the weights that fall outside folded onto the
      edge pixel), ``2n`` multiplications per pixel in two calls (28 to 112 pixels, and wide
      kernels up to 256);
    * on larger images with a wide kernel: two depthwise convolutions with the ``1×K`` and ``K×1``
      taps, ``2K`` multiplications per pixel."""
    if radius <= 0:
        return x
    h, w = x.shape[-2:]
    taps = 2 * radius + 1
    weights = _kernels(sigma, radius, x)  # N×K
    if 2 * taps * taps <= max(h, w):
        return _depthwise(x, weights[:, :, None] * weights[:, None, :], radius, radius)
    if max(h, w) <= _MATRIX_SIDE:
        rows = _band(weights, radius, h)[:, None]
        cols = rows if h == w else _band(weights, radius, w)[:, None]
        return rows @ x @ cols.transpose(-1, -2)
    return _depthwise(_depthwise(x, weights[:, None, :], 0, radius), weights[:, :, None], radius, 0)


_MATRIX_SIDE = 256  # up to this side two n×n products beat two 1×K convolutions (150 px, radius 6: 18 against 26 ms)


def _depthwise(x: Tensor, kernels: Tensor, radius_h: int, radius_w: int) -> Tensor:
    """Each image of ``x`` (``N×C×H×W``) correlated with its own ``kernels[i]`` (``N×kh×kw``, odd
    sides ``2·radius + 1``) on every channel, edges replicated: one grouped convolution with a group
    per image and channel."""
    n, c, h, w = x.shape
    padded = F.pad(x.reshape(1, n * c, h, w), (radius_w, radius_w, radius_h, radius_h), mode="replicate")
    per_channel = kernels.repeat_interleave(c, dim=0)[:, None]  # NC×1×kh×kw
    return F.conv2d(padded, per_channel, groups=n * c).reshape(n, c, h, w)


def _kernels(sigma: Tensor, radius: int, like: Tensor) -> Tensor:
    """``N×(2·radius+1)``: each image's normalized Gaussian taps (a unit impulse where ``σ ≈ 0``).

    Taps below ``eps²`` of the centre tap are set to zero: they cannot move a sum of pixels in
    ``[0, 1]`` by a rounding step, and some would be subnormal (``exp(−d²/2σ²)`` for ``d = 3`` and
    ``σ ≈ 0.21``, in float32), which a CPU multiplies ~10× slower: one such image in a batch made
    the blur's forward and backward 9× slower for it."""
    k = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    s = sigma.to(like.dtype)[:, None]
    weights = torch.exp(-0.5 * (k[None] / s.clamp_min(1e-6)).square())
    weights = weights.masked_fill(weights < torch.finfo(like.dtype).eps ** 2, 0.0)
    delta = (k == 0).to(like.dtype)[None].expand_as(weights)
    return torch.where(s > 1e-3, weights / weights.sum(dim=1, keepdim=True), delta)


def _band(weights: Tensor, radius: int, size: int) -> Tensor:
    """``N×size×size``: the blur along one axis as a matrix; row ``i`` puts tap ``d`` on pixel
    ``clamp(i + d, 0, size − 1)`` (replicated edges)."""
    taps = torch.arange(-radius, radius + 1, device=weights.device)
    source = (torch.arange(size, device=weights.device)[:, None] + taps[None]).clamp(0, size - 1)  # size×K
    onehot = F.one_hot(source, size).to(weights.dtype).permute(1, 0, 2).reshape(2 * radius + 1, size * size)
    return (weights @ onehot).reshape(-1, size, size)


@dataclass(frozen=True)
class Gamut(Transform):
    """A printer's narrower range: ``lo + (hi − lo)·x`` with ``lo ∈ [0, black]`` (ink is never fully
    black) and ``hi ∈ [1 − white, 1]`` (paper is never fully white), per image; ``0 ≤ black, white ≤ 0.5``."""

    black: float = 0.1
    white: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "black", check_range("Gamut", "black", self.black, 0.5))
        object.__setattr__(self, "white", check_range("Gamut", "white", self.white, 0.5))

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        n = x.shape[0]
        lo = torch.rand(n, generator=generator, dtype=x.dtype, device=x.device) * self.black
        hi = 1 - torch.rand(n, generator=generator, dtype=x.dtype, device=x.device) * self.white
        return {"lo": lo, "hi": hi}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        lo, hi = per_point(params["lo"], x), per_point(params["hi"], x)
        return lo + (hi - lo) * x

    def scaled(self, strength: float) -> Transform:
        s = check_range("Gamut", "strength", strength)
        return replace(self, black=min(self.black * s, 0.5), white=min(self.white * s, 0.5))

    def describe(self) -> str:
        return f"print gamut (black ≤{self.black:g}, white ≥{1 - self.white:g})"
