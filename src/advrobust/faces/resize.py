"""The image geometry of face-api, differentiable: zero padding to a square and TF's legacy bilinear resize.

Both follow TensorFlow.js exactly, so the ported networks see the pixels the original sees:

* :func:`pad_to_square` — face-api's ``padToSquare``: zeros after the image (detector) or split around
  it with the larger half after (``round(diff / 2)``, JavaScript rounding) when centred (recognizer).
* :func:`resize_bilinear` — ``tf.image.resizeBilinear(..., alignCorners=false, halfPixelCenters=false)``:
  output pixel ``i`` reads input coordinate ``i · in/out`` (no half-pixel offset, unlike
  ``torch.nn.functional.interpolate``), its floor and the next pixel (clamped), weighted by the
  fraction; columns are interpolated first, then rows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def js_round(value: float) -> int:
    """JavaScript's ``Math.round``: halves round up (Python's ``round`` rounds them to even)."""
    return math.floor(value + 0.5)


def pad_to_square(x: torch.Tensor, centered: bool) -> torch.Tensor:
    """``x`` (N×C×H×W) zero-padded to a square along its shorter side."""
    height, width = x.shape[-2:]
    diff = abs(height - width)
    if diff == 0:
        return x
    after = js_round(diff * 0.5) if centered else diff
    before = diff - after
    if height > width:
        return F.pad(x, (before, after, 0, 0))
    return F.pad(x, (0, 0, before, after))


def _taps(size_in: int, size_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    source = torch.arange(size_out, dtype=torch.float64) * (size_in / size_out)
    low = source.floor()
    frac = (source - low).to(torch.float32)
    high = torch.clamp(source.ceil(), max=size_in - 1)
    return low.long().to(device), high.long().to(device), frac.to(device)


def resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` (N×C×H×W) resized to ``size``×``size`` as TF's legacy bilinear resize does."""
    height, width = x.shape[-2:]
    if (height, width) == (size, size):
        return x
    col_low, col_high, col_frac = _taps(width, size, x.device)
    left, right = x.index_select(-1, col_low), x.index_select(-1, col_high)
    x = left + (right - left) * col_frac.to(x.dtype)
    row_low, row_high, row_frac = _taps(height, size, x.device)
    top, bottom = x.index_select(-2, row_low), x.index_select(-2, row_high)
    return top + (bottom - top) * row_frac.to(x.dtype).view(-1, 1)
