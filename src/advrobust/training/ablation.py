"""Training the base classifier of column smoothing on ablated images (Levine & Feizi 2020,
"(De)Randomized Smoothing for Certifiable Defense against Patch Attacks", Section 4: the base
classifier is trained on ablated training images, one random band position per image and step).

The model takes the ablated encoding of :func:`advrobust.defences.ablation.ablate` (``2·C``
channels): build it for that shape, e.g. ``create("mnist-cnn", 10, (2, 28, 28))``, and smooth it with
:class:`advrobust.defences.ColumnSmoothing` and the same ``band``. Validation during ``fit`` feeds
plain ``C``-channel images and so does not apply; measure the smoothed classifier instead. Band
positions come from torch's global generator, seeded per epoch by the engine. Importing this module
registers ``column-ablation`` in :data:`advrobust.training.methods.METHODS`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.defences.ablation import Axis, ablate
from advrobust.defences.inputs import positive_int
from advrobust.errors import InputError
from advrobust.training.methods import METHODS


class ColumnAblation:
    """Cross-entropy on images ablated to one band of ``band`` columns (rows) at a uniformly random
    position per image (Levine & Feizi 2020)."""

    name = "column-ablation"

    def __init__(self, band: int = 4, axis: Axis = "column") -> None:
        self.band = positive_int("column-ablation", "band", band)
        if axis not in ("column", "row"):
            raise InputError(f"column-ablation: axis must be 'column' or 'row', got {axis!r}")
        self.axis: Axis = axis

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, progress: float) -> tuple[Tensor, Tensor]:
        _check_channels(model, 2 * x.shape[1])
        size = x.shape[3 if self.axis == "column" else 2]
        positions = torch.randint(0, size, (x.shape[0],), device=x.device)
        logits = model(ablate(x, positions, self.band, self.axis))
        return F.cross_entropy(logits, y), logits

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "band": self.band, "axis": self.axis}


def _check_channels(model: nn.Module, channels: int) -> None:
    """A one-line error for a model whose first convolution does not take the ``2·C`` ablated channels
    (e.g. one built for the plain images, as ``advrobust train`` does)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and first.in_channels != channels:
        raise InputError(
            f"column-ablation trains on the ablated encoding, {channels} input channels, but the model's first "
            f"convolution takes {first.in_channels}: build it with input_shape=({channels}, H, W)"
        )


METHODS["column-ablation"] = ColumnAblation
