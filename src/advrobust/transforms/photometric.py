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
    times, in ``x``, and in ``sigma`` (then never by shifted copies).

    The blur is separable and linear; of three equal ways to compute it (:data:`BLUR_WAYS`),
    :func:`blur_way` picks the cheapest for the batch's shape (``K = 2·radius + 1`` taps, ``n`` the
    longer side; measured forward and backward on a CPU, one thread,
    ``benchmarks/bench_blur.py``):

    * ``convolution``: one depthwise convolution with the ``K×K`` outer product of the taps over the
      edge-padded image, ``K²`` multiplications per pixel in one vectorized pass. The fastest for a
      small kernel on a large image (``2·K² ≤ n``) when there are at least 12 planes (images ×
      channels): 8×3×150×150, ``radius = 3``: 7.5 ms against 10.6 for the matrices and 14.8 for
      shifted copies. On fewer planes it is slow (1×3×416×416: 28 ms against 12.6);
    * ``shifted``: along each axis, ``K`` shifted copies of the edge-padded image added up
      (:class:`_BlurAlong`, whose backward is the exact adjoint), ``2K`` passes over the pixels:
      for large images with a small kernel (``33·K < n``);
    * ``matrices``: two batched products with banded ``n×n`` matrices, ``B_h · x · B_wᵀ`` (the
      kernel, with the weights that fall outside folded onto the edge pixel), ``2n``
      multiplications per pixel in two calls: the rest, small images (28 and 64 pixels: 0.8 and
      1.5 ms against 1.1 and 2.0 for the convolution) and wide kernels."""
    if radius <= 0:
        return x
    weights = _kernels(sigma, radius, x)  # N×K
    return BLUR_WAYS[blur_way(tuple(x.shape), radius, weights.requires_grad)](x, weights, radius)


_CONVOLUTION_PLANES = 12  # oneDNN's depthwise convolution is slow on fewer (images × channels)
_SHIFT_COST = 33  # a pass of shifted copies costs about as much as 33 columns of a banded product


def blur_way(shape: tuple[int, ...], radius: int, sigma_grad: bool = False) -> str:
    """Which of :data:`BLUR_WAYS` :func:`blur` takes for a batch of ``shape = (N, C, H, W)`` (see
    there); ``sigma_grad``: the widths are differentiated, which shifted copies do not do."""
    n, c, h, w = shape
    taps, side = 2 * radius + 1, max(h, w)
    if 2 * taps * taps <= side and n * c >= _CONVOLUTION_PLANES:
        return "convolution"
    if _SHIFT_COST * taps < side and not sigma_grad:
        return "shifted"
    return "matrices"


def _blur_by_convolution(x: Tensor, weights: Tensor, radius: int) -> Tensor:
    n, c, h, w = x.shape
    padded = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    per_plane = (weights[:, :, None] * weights[:, None, :]).repeat_interleave(c, dim=0)[:, None]  # NC×1×K×K
    return F.conv2d(padded, per_plane, groups=n * c).reshape(n, c, h, w)


def _blur_by_shifted_copies(x: Tensor, weights: Tensor, radius: int) -> Tensor:
    return _BlurAlong.apply(_BlurAlong.apply(x, weights, radius, -1, False), weights, radius, -2, False)


def _blur_by_matrices(x: Tensor, weights: Tensor, radius: int) -> Tensor:
    h, w = x.shape[-2:]
    rows = _band(weights, radius, h)[:, None]
    cols = rows if h == w else _band(weights, radius, w)[:, None]
    return rows @ x @ cols.transpose(-1, -2)


# the three equal ways of :func:`blur`, each ``(x, taps N×K, radius)``
BLUR_WAYS = {"convolution": _blur_by_convolution, "shifted": _blur_by_shifted_copies, "matrices": _blur_by_matrices}


class _BlurAlong(torch.autograd.Function):
    """One axis (``dim``, ``-1`` or ``-2``) of :func:`blur` by shifted copies: ``out[j] = Σ_d k_d ·
    x[clamp(j + d)]`` with each image's taps ``k`` (``N×K``, not differentiated); with ``adjoint``
    its transpose, ``Σ_d k_d · g[j − d]`` with the padding's share folded back onto the edge pixels.
    Each is the other's backward, so the blur is differentiable any number of times in ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, weights: Tensor, radius: int, dim: int, adjoint: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(weights)
        ctx.radius, ctx.dim, ctx.adjoint = radius, dim, adjoint
        taps = weights[:, None, None, :]  # N×1×1×K: broadcast over channels and the other axis
        size = x.shape[dim]
        if adjoint:
            return _fold_edges(_spread(x, taps, radius, dim), radius, dim, size)
        padding = (radius, radius, 0, 0) if dim == -1 else (0, 0, radius, radius)
        padded = F.pad(x, padding, mode="replicate")
        out = padded.narrow(dim, 0, size) * taps[..., :1]
        for d in range(1, 2 * radius + 1):
            out.addcmul_(padded.narrow(dim, d, size), taps[..., d : d + 1])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None]:  # type: ignore[override]
        (weights,) = ctx.saved_tensors
        return _BlurAlong.apply(grad, weights, ctx.radius, ctx.dim, not ctx.adjoint), None, None, None, None


def _spread(g: Tensor, taps: Tensor, radius: int, dim: int) -> Tensor:
    """``g`` (``size`` long along ``dim``) spread onto the padded axis (``size + 2·radius``): the
    transpose of reading ``2·radius + 1`` shifted windows of it."""
    size = g.shape[dim]
    shape = list(g.shape)
    shape[dim] = size + 2 * radius
    spread = g.new_zeros(shape)
    for d in range(2 * radius + 1):
        spread.narrow(dim, d, size).addcmul_(g, taps[..., d : d + 1])
    return spread


def _fold_edges(spread: Tensor, radius: int, dim: int, size: int) -> Tensor:
    """The transpose of replicate padding: each padded position's value added onto the edge pixel it
    copied."""
    out = spread.narrow(dim, radius, size).clone()
    out.narrow(dim, 0, 1).add_(spread.narrow(dim, 0, radius).sum(dim, keepdim=True))
    out.narrow(dim, size - 1, 1).add_(spread.narrow(dim, size + radius, radius).sum(dim, keepdim=True))
    return out


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
