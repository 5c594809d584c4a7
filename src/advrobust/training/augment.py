"""Data augmentation of training batches: random translations.

:func:`random_shift` moves each image by an integer offset ``(dy, dx)`` drawn uniformly from
``[-k, k]²`` and fills the uncovered border with zeros: padding by ``k`` and cropping at a random
offset, the augmentation of He et al. (2016, "Deep residual learning", §4.2: 4 pixels on CIFAR-10)
and, on digits, of the distorted training sets of LeCun et al. (1998) and Simard et al. (2003).
Off in every default recipe (``shift = 0``); ``fit(..., shift=2)`` or ``advrobust train --shift 2``
turns it on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advrobust.errors import InputError


def random_shift(x: Tensor, pixels: int, generator: torch.Generator | None = None) -> Tensor:
    """``x`` (``N×C×H×W``) with each image translated by its own offset in ``[-pixels, pixels]²``,
    zero-filled; ``pixels = 0`` returns ``x`` itself. The offsets come from ``generator`` (CPU)."""
    if pixels == 0:
        return x
    n, _, h, w = x.shape
    if not 0 < pixels < min(h, w):
        raise InputError(f"shift must be between 0 and the image's side - 1 ({min(h, w) - 1}), got {pixels}")
    offsets = torch.randint(0, 2 * pixels + 1, (n, 2), generator=generator).to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # N×H rows of the padded image
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # N×W columns
    padded = F.pad(x, (pixels, pixels, pixels, pixels)).permute(0, 2, 3, 1)  # N×H'×W'×C
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
