"""Small dense-prediction CNNs for the built-in scenes (:mod:`advrobust.data.scenes`), built around the
default digit classifier turned fully convolutional (Long et al. 2015, FCN, §3.1: a classifier's dense
layers are convolutions whose kernels cover their whole input).

* The shared **window encoder**: ``mnist-cnn``'s two conv blocks (stride 4), then its first dense
  layer as a 7×7 convolution over the stride-4 map — the digit classifier's 28×28 window slid over
  the scene in steps of 4 pixels. That layer is factored (a 7×7 convolution to ``rank`` channels,
  then 1×1 to ``hidden``), so it costs a quarter of the dense layer; :func:`encoder_from_classifier`
  fills it from a trained ``mnist-cnn`` with a truncated SVD (rank 32 keeps the classifier's test
  accuracy within 0.1 point).
* ``mnist-fcn`` — the segmenter: per cell, class logits (background + digits; the digit rows start as
  the classifier's last layer), a residual 5×5 *vote* among neighbouring cells (a cell at a digit's
  rim sees the digit off-centre; the centre cells know better), upsampled bilinearly to full
  resolution where they meet full-resolution features of the image (the skip of FCN-8s): two 1×1
  convolutions give ``K`` logits per pixel.
* ``mnist-centernet`` — an anchor-free detector in the spirit of CenterNet (Zhou et al. 2019,
  "Objects as points"): the encoder and one 1×1 convolution on the stride-4 grid return the
  ``center-grid`` format of :mod:`advrobust.tasks.detection` (class logits with a background class,
  centre offset, log box size).

Each model names its task in a ``task`` attribute (the detector also its grid ``stride``), so the
attacks need no ``task=`` argument for them. Image sides must be multiples of 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advrobust.errors import InputError

Shape = tuple[int, int, int]
#: channels of the centre-grid format besides the class logits: centre offset (2), log box size (2)
BOX_CHANNELS = 4
#: the side of the classifier's window in cells of the stride-4 map (28×28 pixels)
WINDOW = 7


class WindowEncoder(nn.Module):
    """``mnist-cnn``'s features and its first dense layer slid as a (factored) 7×7 convolution:
    ``N×C×H×W → N×hidden×H/4×W/4`` (after the ReLU)."""

    def __init__(self, channels: int, width: int = 16, hidden: int = 128, rank: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(  # the layout of MnistCNN.features, so its weights load as they are
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.window = nn.Conv2d(2 * width, rank, WINDOW, padding=WINDOW // 2, bias=False)
        self.expand = nn.Conv2d(rank, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.expand(self.window(self.features(x))))


def pointwise(conv: nn.Conv2d, z: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution as a batched matrix product over the pixels: the same values as ``conv(z)``,
    about 3× faster on a CPU at full resolution with few channels (forward and backward), where the
    convolution kernels are built for wide layers."""
    n, c, h, w = z.shape
    weight = conv.weight.view(conv.out_channels, c).expand(n, -1, -1)
    return torch.baddbmm(conv.bias.view(1, -1, 1), weight, z.reshape(n, c, h * w)).view(n, -1, h, w)


class MnistFCN(nn.Module):
    """Per-pixel logits ``N×K×H×W``; ``num_classes`` counts the background (class 0)."""

    task = "segmentation"

    def __init__(self, num_classes: int, input_shape: Shape, width: int = 16, hidden: int = 128,
                 rank: int = 32) -> None:
        super().__init__()
        self.encoder = WindowEncoder(input_shape[0], width, hidden, rank)
        self.classes = nn.Conv2d(hidden, num_classes, 1)
        self.vote = nn.Conv2d(num_classes, num_classes, 5, padding=2)
        self.fine = nn.Conv2d(input_shape[0], width, 3, padding=1)
        self.head = nn.Sequential(
            nn.Conv2d(width + num_classes, 2 * width, 1), nn.ReLU(), nn.Conv2d(2 * width, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = self.classes(self.encoder(x))
        coarse = coarse + self.vote(coarse)
        up = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        hidden = F.relu(pointwise(self.head[0], torch.cat([F.relu(self.fine(x)), up], dim=1)))
        return pointwise(self.head[2], hidden)


class MnistCenterNet(nn.Module):
    """The ``center-grid`` output ``N×(K+4)×H/4×W/4``; ``num_classes`` counts the background."""

    task = "detection"
    stride = 4

    def __init__(self, num_classes: int, input_shape: Shape, width: int = 16, hidden: int = 128,
                 rank: int = 32) -> None:
        super().__init__()
        self.encoder = WindowEncoder(input_shape[0], width, hidden, rank)
        self.classes = nn.Conv2d(hidden, num_classes + BOX_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classes(self.encoder(x))


@torch.no_grad()
def encoder_from_classifier(model: nn.Module, classifier: nn.Module) -> None:
    """Start ``model`` (a dense architecture above) from a trained ``mnist-cnn`` of the same ``width``
    and ``hidden``: its conv blocks as they are, its first dense layer ``W = U·S·Vᵀ`` truncated to the
    encoder's rank (``window ← Vᵀ`` as 7×7 kernels, ``expand ← U·S``), and its last layer as the
    digit rows ``1..10`` of the class logits (row 0, the background, and the box rows start fresh)."""
    encoder: WindowEncoder = model.encoder
    try:
        encoder.features.load_state_dict(classifier.features.state_dict())
        dense, last = classifier.classifier[1], classifier.classifier[3]
        rank = encoder.window.out_channels
        u, s, vt = torch.linalg.svd(dense.weight, full_matrices=False)
        encoder.window.weight.copy_(vt[:rank].reshape(encoder.window.weight.shape))
        encoder.expand.weight.copy_((u[:, :rank] * s[:rank])[:, :, None, None])
        encoder.expand.bias.copy_(dense.bias)
        digits = last.out_features
        model.classes.weight[1 : digits + 1].copy_(last.weight[:, :, None, None])
        model.classes.bias[1 : digits + 1].copy_(last.bias)
    except (AttributeError, IndexError, RuntimeError) as exc:
        raise InputError(f"cannot start the dense model from this classifier (is it an mnist-cnn of the same "
                         f"width and hidden size, with 28×28 inputs?): {exc}") from None


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
