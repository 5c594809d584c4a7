"""Small dense-prediction CNNs for the built-in scenes (:mod:`advrobust.data.scenes`).

* ``mnist-fcn`` — a fully convolutional segmenter (Long et al. 2015, FCN): a strided encoder to 1/4
  resolution, two dilated 3×3 convolutions for context (Yu & Koltun 2016: dilation 2 and 4, so a
  pixel sees its whole digit), then back to full resolution where the upsampled context meets the
  full-resolution features (a skip, as FCN-8s) and two 1×1 convolutions give ``K`` logits per pixel.
* ``mnist-centernet`` — an anchor-free detector in the spirit of CenterNet (Zhou et al. 2019,
  "Objects as points"): the same encoder and context, and a head on the stride-4 grid that returns
  the ``center-grid`` format of :mod:`advrobust.tasks.detection` (class logits with a background
  class, centre offset, log box size).

Each model names its task in a ``task`` attribute (the detector also its grid ``stride``), so the
attacks need no ``task=`` argument for them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advrobust.errors import InputError

Shape = tuple[int, int, int]
#: channels of the centre-grid format besides the class logits: centre offset (2), log box size (2)
BOX_CHANNELS = 4


def _encoder(c: int, width: int) -> tuple[nn.Module, nn.Module]:
    """Full-resolution features (``width`` channels) and the 1/4-resolution context (``4·width``)."""
    stem = nn.Sequential(*_block(c, width))
    context = nn.Sequential(
        *_block(width, 2 * width, stride=2), *_block(2 * width, 4 * width, stride=2),
        *_block(4 * width, 4 * width, dilation=2), *_block(4 * width, 4 * width, dilation=4),
    )
    return stem, context


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    """3×3 convolution, batch norm (Ioffe & Szegedy 2015: it lets a few hundred steps train), ReLU."""
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(),
    ]


class MnistFCN(nn.Module):
    """Per-pixel logits ``N×K×H×W`` for images whose sides are multiples of 4."""

    task = "segmentation"

    def __init__(self, num_classes: int, input_shape: Shape, width: int = 16) -> None:
        super().__init__()
        self.stem, self.context = _encoder(input_shape[0], width)
        self.reduce = nn.Conv2d(4 * width, width, 1)
        self.head = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 1), nn.ReLU(), nn.Conv2d(2 * width, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = self.stem(x)
        coarse = self.reduce(self.context(fine))
        up = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([fine, up], dim=1))


class MnistCenterNet(nn.Module):
    """The ``center-grid`` output ``N×(K+4)×H/4×W/4``; ``num_classes`` counts the background."""

    task = "detection"
    stride = 4

    def __init__(self, num_classes: int, input_shape: Shape, width: int = 16) -> None:
        super().__init__()
        self.stem, self.context = _encoder(input_shape[0], width)
        self.head = nn.Sequential(
            nn.Conv2d(4 * width, 4 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4 * width, num_classes + BOX_CHANNELS, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.context(self.stem(x)))


#: the dense architectures by name (apart from the classifiers' registry: their outputs are not N×K)
DENSE_ARCHITECTURES: dict[str, type[nn.Module]] = {"mnist-fcn": MnistFCN, "mnist-centernet": MnistCenterNet}


def create_dense(
    arch: str, num_classes: int, input_shape: Shape, *, seed: int | None = None, **kwargs: int
) -> nn.Module:
    """Build a dense architecture (``seed``: reproducible initial weights, global RNG untouched)."""
    if arch not in DENSE_ARCHITECTURES:
        raise InputError(f"unknown dense architecture {arch!r}: choose one of {', '.join(DENSE_ARCHITECTURES)}")
    shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    if seed is None:
        return DENSE_ARCHITECTURES[arch](num_classes, shape, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DENSE_ARCHITECTURES[arch](num_classes, shape, **kwargs)
