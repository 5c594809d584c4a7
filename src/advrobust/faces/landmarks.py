"""face-api's 68-point face landmark network and the face alignment box it gives.

The network (face-api's ``FaceLandmark68Net``): four dense blocks of depthwise-separable
convolutions (Howard et al., "MobileNets", 2017) with DenseNet-style sums of all earlier outputs of
the block (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017), each halving the
resolution (112 → 7), a 7×7 average pool and a fully connected layer to 68 (x, y) points relative
to the 112×112 input. TF "same" padding at stride 2 pads only after (bottom/right), as here.

Alignment for the recognizer (face-api's ``align(null, {useDlibAlignment: true})``, which its
``withFaceDescriptors`` uses): with ``c`` the mean of the centres of the left eye, the right eye and
the mouth and ``m`` the mean distance of the two eye centres to the mouth centre, a square of side
``s = floor(m / 0.45)`` with its corner at ``floor(c − (0.5·s, 0.43·s))`` (not below 0). dlib's
threshold of 0.6 assumes faces framed like this, not the detector's looser box.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from advrobust.faces.layers import Conv, SeparableConv, same_padding

INPUT_SIZE = 112
POINTS = 68
EYE_MOUTH_SCALE = 0.45  # face-api's relScale
CENTRE = (0.5, 0.43)  # face-api's relX, relY
LEFT_EYE, RIGHT_EYE, MOUTH = slice(36, 42), slice(42, 48), slice(48, 68)
_CHANNELS = (32, 64, 128, 256)


def _same_pad(x: torch.Tensor, stride: int, kernel: int = 3) -> torch.Tensor:
    return F.pad(x, same_padding(x, kernel, stride))


def _separable(x: torch.Tensor, layer: SeparableConv, stride: int) -> torch.Tensor:
    out = F.conv2d(_same_pad(x, stride), layer.depthwise_filter, stride=stride, groups=x.shape[1])
    return F.conv2d(out, layer.pointwise_filter, layer.bias)


class DenseBlock(nn.Module):
    """Four convolutions; each input is the ReLU of the sum of the block's earlier outputs."""

    def __init__(self, in_channels: int, out_channels: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.conv0 = Conv(in_channels, out_channels, 3) if first else SeparableConv(in_channels, out_channels)
        for index in range(1, 4):
            self.add_module(f"conv{index}", SeparableConv(out_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            out = F.relu(F.conv2d(_same_pad(x, 2), self.conv0.filters, self.conv0.bias, stride=2))
        else:
            out = F.relu(_separable(x, self.conv0, 2))
        out2 = _separable(out, self.conv1, 1)
        out3 = _separable(F.relu(out + out2), self.conv2, 1)
        out4 = _separable(F.relu(out + (out2 + out3)), self.conv3, 1)
        return F.relu(out + (out2 + (out3 + out4)))  # summed in face-api's order


class FullyConnected(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))


class FaceLandmark68Net(nn.Module):
    """N×3×112×112 RGB faces in [0, 1] → N×68×2 points, relative to the 112×112 input."""

    def __init__(self) -> None:
        super().__init__()
        previous = 3
        for index, channels in enumerate(_CHANNELS):
            self.add_module(f"dense{index}", DenseBlock(previous, channels, first=index == 0))
            previous = channels
        self.fc = FullyConnected(_CHANNELS[-1], 2 * POINTS)
        self.register_buffer("mean_rgb", torch.tensor((122.782, 117.001, 104.298)).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (x * 255 - self.mean_rgb) / 255
        for index in range(len(_CHANNELS)):
            out = getattr(self, f"dense{index}")(out)
        out = F.avg_pool2d(out, 7, 2).flatten(1)
        return (out @ self.fc.weights + self.fc.bias).view(-1, POINTS, 2)


def landmarks_in_image(
    relative: torch.Tensor, crop_size: tuple[int, int], shift: tuple[float, float]
) -> torch.Tensor:
    """Points (68×2, relative to the 112 input) in image pixels, for a face crop of ``(width, height)``.

    Undoes the centred padding to a square (face-api's ``postProcess``: half the difference on each
    side, unrounded), scales to the crop and shifts by the detection box's corner.
    """
    width, height = crop_size
    scale = INPUT_SIZE / max(width, height)
    in_w, in_h = width * scale, height * scale
    pad_x = abs(in_w - in_h) / 2 if in_w < in_h else 0.0
    pad_y = abs(in_w - in_h) / 2 if in_h < in_w else 0.0
    x = (relative[:, 0].double() * INPUT_SIZE - pad_x) / in_w * width + shift[0]
    y = (relative[:, 1].double() * INPUT_SIZE - pad_y) / in_h * height + shift[1]
    return torch.stack([x, y], dim=1)


def aligned_box(points: torch.Tensor, crop_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The box face-api's ``alignDlib`` gives for the 68 ``points`` (pixels) of a face crop of ``(width, height)``."""
    centres = torch.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0), points[MOUTH].mean(0)])
    to_mouth = (centres[2] - centres[:2]).norm(dim=1).mean().item()
    size = math.floor(to_mouth / EYE_MOUTH_SCALE)
    centre_x, centre_y = centres.mean(0).tolist()
    x = math.floor(max(0.0, centre_x - CENTRE[0] * size))
    y = math.floor(max(0.0, centre_y - CENTRE[1] * size))
    width, height = crop_size  # as face-api: bounded by the crop's size (the landmarks' image), plus the corner
    return (float(x), float(y), float(min(size, width + x)), float(min(size, height + y)))
