"""Printability and smoothness of a texture: the non-printability score and total variation.

Sharif, Bhagavatula, Bauer & Reiter (2016, "Accessorize to a crime", §4.3.3) add two terms to a
physical attack's objective so that what is optimized survives a printer and a camera:

* **non-printability score** (NPS), their eq. 5: ``NPS(p̂) = Σ_{p ∈ p̂} Π_{c ∈ P} |p − c|`` over the
  texture's pixels ``p`` and the set ``P`` of colours the printer reproduces (measured by printing a
  colour chart and photographing it). It is zero exactly when every pixel is a printable colour.
  The product of many distances below 1 vanishes numerically for a palette of 30 colours, so the
  default here is the form of Thys, Van Ranst & Goedemé (2019, "Fooling automated surveillance
  cameras", eq. 1), the distance to the *nearest* printable colour, ``Σ_p min_{c ∈ P} |p − c|``:
  zero on the same textures, with a gradient of usable size. ``reduction="product"`` gives eq. 5.
* **total variation** (TV), their eq. 4: ``TV(r) = Σ_{i,j} ((r_{i,j} − r_{i+1,j})² + (r_{i,j} − r_{i,j+1})²)^{1/2}``:
  small for smooth textures, which a camera's blur and sampling do not wash out.

Both are averaged over the texture's pixels (inside its support when a mask is given), so their
weights do not depend on the texture's size. Colours are RGB in ``[0, 1]``; a one-channel texture is
compared as grey ``(v, v, v)``.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import torch
from torch import Tensor

from advrobust.errors import InputError

_TV_EPS = 1e-8  # inside the square root: TV stays differentiable where the texture is flat


def default_palette() -> Tensor:
    """30 printable RGB colours: every combination of the levels 0.1, 0.5, 0.9 per channel (27), and
    the greys 0.3 and 0.7 and a paper white 0.95 — a stand-in for an office printer's reproducible
    range (no ink prints pure black, no paper is pure white). Measure your own printer for real use:
    print a colour chart, photograph it and pass the colours with :func:`load_palette`."""
    levels = (0.1, 0.5, 0.9)
    colours = [list(c) for c in itertools.product(levels, repeat=3)]
    colours += [[0.3] * 3, [0.7] * 3, [0.95] * 3]
    return torch.tensor(colours)


def check_palette(palette: object, owner: str = "palette") -> Tensor:
    """A ``K×3`` float tensor of RGB colours in ``[0, 1]``, ``K ≥ 1``, checked."""
    if not isinstance(palette, Tensor):
        try:
            palette = torch.as_tensor(palette, dtype=torch.float32)
        except (TypeError, ValueError):
            raise InputError(f"{owner} must be a K×3 table of RGB colours in [0, 1]") from None
    if palette.dim() != 2 or palette.shape[1] != 3 or palette.shape[0] < 1:
        raise InputError(f"{owner} must have shape (K, 3), one RGB colour per row; got {tuple(palette.shape)}")
    if not palette.dtype.is_floating_point:
        palette = palette.float()
    if not bool(torch.isfinite(palette).all()) or float(palette.min()) < 0 or float(palette.max()) > 1:
        raise InputError(f"{owner} colours must be finite and in [0, 1] (divide 0–255 values by 255)")
    return palette


def load_palette(path: str | Path) -> Tensor:
    """Printable colours from a CSV file, one ``r,g,b`` triplet a line (``0–255`` integers, or
    ``0–1`` fractions when every value is ≤ 1); a header line and ``#`` comments are skipped."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"palette file {str(p)!r} does not exist")
    rows: list[list[float]] = []
    with p.open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row if c.strip()]
            if not cells or cells[0].startswith("#"):
                continue
            try:
                values = [float(c) for c in cells]
            except ValueError:
                if not rows and lineno == 1:
                    continue  # a header
                bad = f"palette {p.name!r} line {lineno}: expected three numbers r,g,b, got {row!r}"
                raise InputError(bad) from None
            if len(values) != 3:
                raise InputError(f"palette {p.name!r} line {lineno}: expected three numbers r,g,b, got {len(values)}")
            rows.append(values)
    if not rows:
        raise InputError(f"palette {p.name!r} holds no colours: one r,g,b triplet a line")
    table = torch.tensor(rows)
    if float(table.min()) < 0 or float(table.max()) > 255:
        raise InputError(f"palette {p.name!r}: colour values must lie in 0–255 (or 0–1)")
    if float(table.max()) > 1:
        table = table / 255
    return check_palette(table, owner=f"palette {p.name!r}")


def _as_rgb_pixels(texture: Tensor) -> Tensor:
    """``…×C×H×W`` (C = 1 or 3) → ``…×HW×3``."""
    c = texture.shape[-3]
    if c not in (1, 3):
        raise InputError(f"NPS needs a grey (1-channel) or RGB (3-channel) texture, got {c} channels")
    pixels = texture.flatten(-2).transpose(-1, -2)
    return pixels.expand(*pixels.shape[:-1], 3) if c == 1 else pixels


def _plane(mask: Tensor, texture: Tensor) -> Tensor:
    """One ``H×W`` support for the texture's pixels (a mask of shape ``H×W`` or ``1×…×1×H×W``)."""
    if mask.shape[-2:] != texture.shape[-2:] or mask[..., 0, 0].numel() != 1:
        raise InputError(f"the mask must be one H×W plane matching the texture {tuple(texture.shape[-2:])}, "
                         f"got {tuple(mask.shape)}")
    return mask.reshape(mask.shape[-2:]).to(texture.dtype)


def _masked_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``…×P`` per-pixel values over the last axis, weighted by a ``P`` (or ``…×P``) mask."""
    if weight is None:
        return values.mean(dim=-1)
    w = weight.to(values.dtype)
    return (values * w).sum(dim=-1) / w.sum(dim=-1).clamp_min(1.0)


def nps(texture: Tensor, palette: Tensor | None = None, mask: Tensor | None = None,
        reduction: str = "min") -> Tensor:
    """Non-printability score of ``texture`` (``C×H×W`` or ``N×C×H×W``), averaged over its pixels
    (inside ``mask``, ``H×W`` broadcastable, when given). ``reduction``: ``"min"`` (distance to the
    nearest palette colour, Thys et al. 2019) or ``"product"`` (Sharif et al. 2016, eq. 5)."""
    pal = check_palette(default_palette() if palette is None else palette).to(texture)
    pixels = _as_rgb_pixels(texture)
    # Euclidean distances, with a floor inside the root so the gradient exists at a palette colour
    d = ((pixels[..., :, None, :] - pal).square().sum(dim=-1) + 1e-12).sqrt() - 1e-6
    d = d.clamp_min(0.0)
    if reduction == "min":
        per_pixel = d.amin(dim=-1)
    elif reduction == "product":
        per_pixel = d.prod(dim=-1)
    else:
        raise InputError(f"nps: reduction must be 'min' or 'product', got {reduction!r}")
    return _masked_mean(per_pixel, None if mask is None else _plane(mask, texture).flatten())


def total_variation(texture: Tensor, mask: Tensor | None = None) -> Tensor:
    """Total variation (Sharif et al. 2016, eq. 4) of ``texture`` (``C×H×W`` or ``N×C×H×W``), summed
    over channels and averaged over pixels; with ``mask`` (``H×W``), only differences between two
    pixels both inside it count (the frame's edge against the face is not the texture's roughness)."""
    dy = texture[..., 1:, :-1] - texture[..., :-1, :-1]
    dx = texture[..., :-1, 1:] - texture[..., :-1, :-1]
    tv = (dx.square() + dy.square() + _TV_EPS).sqrt() - _TV_EPS**0.5  # 0 on a flat texture
    per_pixel = tv.sum(dim=-3).flatten(-2)
    if mask is None:
        return per_pixel.mean(dim=-1)
    m = _plane(mask, texture)
    both = m[1:, :-1] * m[:-1, 1:] * m[:-1, :-1]
    return _masked_mean(per_pixel, both.flatten())
