"""Geometric transformations: rotation, scale, translation and perspective, as one resampling.

Every geometric draw is a 3×3 homography ``M`` (per point) that maps each *output* pixel's
normalized coordinates ``u ∈ [−1, 1]²`` to the input coordinates it is read from; the image is
resampled once, bilinearly (``torch.nn.functional.grid_sample``), so composing rotation, scale,
translation and perspective blurs the image no more than one of them. The output is a linear function
of the input: differentiable, exactly, in ``x``.

The forward motion of the picture is, in pixel units about the image centre,
``q ↦ s·R(θ)·q + (t_x·W, t_y·H)`` followed by a perspective distortion that moves each corner of the
image by up to ``perspective × half the image size`` in each direction (as torchvision's
``RandomPerspective``); ``M`` is its inverse, built directly.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from advrobust.errors import InputError
from advrobust.transforms.base import Params, Transform, check_range, uniform

PADDING_MODES = ("zeros", "border", "reflection")


def base_grid(h: int, w: int, like: Tensor) -> Tensor:
    """``H×W×3`` homogeneous normalized coordinates of the pixel centres (``align_corners=False``);
    built once per size, dtype and device (an attack warps a batch of the same size every step)."""
    return _base_grid(h, w, like.dtype, like.device)


@functools.lru_cache(maxsize=32)
def _base_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    ys = (2 * torch.arange(h, dtype=dtype, device=device) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=dtype, device=device) + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1)


def warp(x: Tensor, matrix: Tensor, padding: str = "zeros", size: tuple[int, int] | None = None,
         mode: str = "bilinear") -> Tensor:
    """Resample ``x`` (``N×C×h×w``) at ``matrix @ u`` for every output pixel ``u`` (``N×3×3``
    homographies in normalized coordinates); the output is ``size`` (default: the input's size).
    Pixels read from outside the input take ``padding`` (``zeros``: value 0); ``mode="nearest"``
    reads the nearest input pixel instead of interpolating (for labels)."""
    h, w = size if size is not None else x.shape[-2:]
    # one (H·W×3)·(3×3N) product (a broadcast batched matmul of 3×3s is ~15× slower on a CPU), laid out
    # N×3×H×W so the perspective division reads whole planes
    grid = (matrix.reshape(-1, 3) @ base_grid(h, w, x).reshape(-1, 3).T).reshape(-1, 3, h, w)
    grid = (grid[:, :2] / grid[:, 2:]).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)


def similarity_inverse(angle: Tensor, scale: Tensor, shift: Tensor, h: int, w: int) -> Tensor:
    """``N×3×3`` normalized-coordinate inverse of ``q ↦ scale·R(angle)·q + shift`` (``q`` and
    ``shift`` in pixels about the image centre; ``angle`` in radians)."""
    n = angle.shape[0]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # R(−θ)/s in pixel units, conjugated by P = diag(w/2, h/2) into normalized units
    a = torch.stack([cos, sin * (h / w), -sin * (w / h), cos], dim=1).reshape(n, 2, 2)
    shift_n = shift / torch.tensor([w / 2, h / 2], dtype=shift.dtype, device=shift.device)
    m = torch.zeros(n, 3, 3, dtype=angle.dtype, device=angle.device)
    m[:, :2, :2] = a
    m[:, :2, 2] = -(a @ shift_n[:, :, None]).squeeze(2)
    m[:, 2, 2] = 1
    return m


def homography(src: Tensor, dst: Tensor) -> Tensor:
    """``N×3×3`` homographies mapping the 4 points ``src`` (``N×4×2``) onto ``dst`` (``N×4×2``)."""
    x, y = src[..., 0], src[..., 1]
    xd, yd = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_x = torch.stack([x, y, one, zero, zero, zero, -x * xd, -y * xd], dim=-1)
    rows_y = torch.stack([zero, zero, zero, x, y, one, -x * yd, -y * yd], dim=-1)
    a = torch.cat([rows_x, rows_y], dim=1)  # N×8×8
    b = torch.cat([xd, yd], dim=1)
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones_like(h[:, :1])], dim=1).reshape(-1, 3, 3)


_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def _through(points: Tensor, matrix: Tensor, size: tuple[int, int]) -> Tensor:
    """Pixel points ``N×P×2`` of an ``size = (h, w)`` image through the normalized-coordinate
    homographies ``matrix`` (``N×3×3``)."""
    h, w = size
    half = torch.tensor([w / 2, h / 2], dtype=points.dtype, device=points.device)
    u = points / half - 1
    v = torch.einsum("npk,njk->npj", torch.cat([u, torch.ones_like(u[..., :1])], dim=-1), matrix)
    return (v[..., :2] / v[..., 2:] + 1) * half


@dataclass(frozen=True)
class Geometric(Transform):
    """Random rotation, scale, translation and perspective, in one bilinear resampling.

    Ranges (each draw uniform, independent per point):

    * ``rotation`` — degrees, ``θ ∈ [−rotation, rotation]``; ``0 ≤ rotation ≤ 180``;
    * ``scale`` — relative, ``s ∈ [1 − scale, 1 + scale]``; ``0 ≤ scale < 1``;
    * ``translation`` — fraction of the image size, ``t_x, t_y ∈ [−translation, translation]``; ``≤ 1``;
    * ``perspective`` — each image corner moves by up to ``perspective`` × half the image size in
      x and in y; ``0 ≤ perspective ≤ 0.5``.

    ``padding``: what fills pixels moved in from outside the image — ``zeros`` (black; right for
    MNIST digits on a black background), ``border`` (the nearest edge pixel) or ``reflection``.
    """

    rotation: float = 0.0
    scale: float = 0.0
    translation: float = 0.0
    perspective: float = 0.0
    padding: str = "zeros"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "rotation", check_range(owner, "rotation", self.rotation, 180.0))
        object.__setattr__(self, "scale", check_range(owner, "scale", self.scale, 0.99))
        object.__setattr__(self, "translation", check_range(owner, "translation", self.translation, 1.0))
        object.__setattr__(self, "perspective", check_range(owner, "perspective", self.perspective, 0.5))
        if self.padding not in PADDING_MODES:
            raise InputError(f"{owner}: padding must be one of {', '.join(PADDING_MODES)}, got {self.padding!r}")

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Params:
        n = x.shape[0]
        u = uniform(n * 12, 1.0, x, generator).reshape(n, 12)  # one draw of 12 U(−1, 1) per point
        return {"angle": u[:, 0] * math.radians(self.rotation), "scale": 1 + u[:, 1] * self.scale,
                "shift": u[:, 2:4] * self.translation, "corners": (u[:, 4:] * self.perspective).reshape(n, 4, 2)}

    def matrix(self, params: Params, h: int, w: int) -> Tensor:
        """The ``N×3×3`` inverse map (output → input coordinates) of a draw, for ``h×w`` images."""
        shift_px = params["shift"] * torch.tensor([w, h], dtype=params["shift"].dtype, device=params["shift"].device)
        m = similarity_inverse(params["angle"], params["scale"], shift_px, h, w)
        if self.perspective > 0:
            out = torch.tensor(_CORNERS, dtype=m.dtype, device=m.device).expand(m.shape[0], 4, 2)
            m = m @ homography(out, out + params["corners"])
        return m

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return warp(x, self.matrix(params, *x.shape[-2:]), self.padding)

    def move_points(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        """The forward motion: input pixels through the inverse of :meth:`matrix` (a homography)."""
        h, w = size
        return _through(points, torch.linalg.inv(self.matrix(params, h, w).to(points.dtype)), size)

    def move_points_back(self, points: Tensor, params: Params, size: tuple[int, int]) -> Tensor:
        """The backward motion: output pixels through :meth:`matrix` itself."""
        h, w = size
        return _through(points, self.matrix(params, h, w).to(points.dtype), size)

    def move_map(self, maps: Tensor, params: Params, fill: int) -> Tensor:
        """The labels resampled by the same homography as the image, nearest neighbour; pixels read
        from outside the input get ``fill`` whatever the image's padding (they show no labelled
        object). Labels travel as ``label + 1`` in floats so that ``0`` marks the outside (exact for
        labels below 2²⁴)."""
        shifted = (maps + 1).to(torch.float32)[:, None]
        moved = warp(shifted, self.matrix(params, *maps.shape[-2:]).to(torch.float32), "zeros", mode="nearest")
        moved = moved[:, 0].round().to(maps.dtype) - 1
        return moved.masked_fill(moved < 0, fill)

    def moves_pixels(self) -> bool:
        return True

    def pull_back(self, maps: Tensor, params: Params) -> Tensor:
        """The forward map (the inverse of :meth:`matrix`) resamples the output-frame ``maps`` at each
        input pixel's landing place; normalized coordinates make it hold at the maps' own resolution
        when their aspect ratio is the image's."""
        inverse = torch.linalg.inv(self.matrix(params, *maps.shape[-2:]).to(torch.float64)).to(maps.dtype)
        return warp(maps, inverse, "zeros")

    def scaled(self, strength: float) -> Transform:
        s = check_range(type(self).__name__, "strength", strength)
        return replace(
            self,
            rotation=min(self.rotation * s, 180.0),
            scale=min(self.scale * s, 0.99),
            translation=min(self.translation * s, 1.0),
            perspective=min(self.perspective * s, 0.5),
        )

    def describe(self) -> str:
        parts = [
            f"rotation ±{self.rotation:g}°" if self.rotation else "",
            f"scale ±{self.scale:g}" if self.scale else "",
            f"translation ±{self.translation:g}" if self.translation else "",
            f"perspective {self.perspective:g}" if self.perspective else "",
        ]
        return ", ".join(p for p in parts if p) or "no geometric change"


def Rotation(degrees: float = 15.0, padding: str = "zeros") -> Geometric:  # noqa: N802 - a transform's name
    """Rotation by ``θ ∈ [−degrees, degrees]`` about the image centre."""
    return Geometric(rotation=degrees, padding=padding)


def Scale(scale: float = 0.1, padding: str = "zeros") -> Geometric:  # noqa: N802
    """Zoom by ``s ∈ [1 − scale, 1 + scale]`` about the image centre."""
    return Geometric(scale=scale, padding=padding)


def Translation(fraction: float = 0.1, padding: str = "zeros") -> Geometric:  # noqa: N802
    """Shift by up to ``fraction`` of the image width (x) and height (y)."""
    return Geometric(translation=fraction, padding=padding)


def Perspective(distortion: float = 0.1, padding: str = "zeros") -> Geometric:  # noqa: N802
    """A random homography moving each corner by up to ``distortion`` × half the image size."""
    return Geometric(perspective=distortion, padding=padding)
