"""dlib's face-recognition ResNet (128-d descriptors of 150×150 faces), as ported to TF.js by face-api.

The network of dlib's ``dlib_face_recognition_resnet_model_v1`` (King, "Dlib-ml: A Machine Learning
Toolkit", JMLR 10, 2009; model trained with a metric loss, 99.38% on LFW): a ResNet (He et al.,
"Deep Residual Learning for Image Recognition", CVPR 2016) of 29 convolutions where every
convolution is followed by a per-channel affine "scale" layer (dlib's frozen batch norm). Two faces
are the same person when the Euclidean distance of their descriptors is below 0.6 (dlib's threshold).

The forward pass follows face-api's ``FaceRecognitionNet`` step for step, so converted weights give
the original's outputs: input ``(255·x − mean_rgb) / 255``; a 7×7 stride-2 "valid" convolution,
3×3 stride-2 max-pool; residual stages of 32, 64, 128 and 256 channels whose down-sampling blocks
use a stride-2 "valid" 3×3 convolution and a 2×2 average-pool shortcut with its channels doubled by
zeros (and the main path padded by one zero row and column when the two shapes differ); global
average; a 256×128 matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advrobust.errors import InputError
from advrobust.faces.layers import Conv, Scale, channel_affine

INPUT_SIZE = 150
DESCRIPTOR_SIZE = 128
SAME_PERSON_THRESHOLD = 0.6  # dlib: same person when the Euclidean distance is below this
MEAN_RGB = (122.782, 117.001, 104.298)


class ConvScale(nn.Module):
    """Convolution, bias, per-channel scale: ``scale(conv(x) + bias)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = Conv(in_channels, out_channels, kernel)
        self.scale = Scale(out_channels)

    def forward(self, x: torch.Tensor, stride: int = 1, padding: int | None = None) -> torch.Tensor:
        pad = self.conv.filters.shape[-1] // 2 if padding is None else padding  # TF "same" at stride 1
        out = F.conv2d(x, self.conv.filters, self.conv.bias, stride=stride, padding=pad)
        return channel_affine(out, self.scale.weights, self.scale.biases)


class Residual(nn.Module):
    """``relu(x + conv2(relu(conv1(x))))``, or its down-sampling form (stride-2 "valid" conv1)."""

    def __init__(self, in_channels: int, out_channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(in_channels, out_channels, 3)
        self.conv2 = ConvScale(out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.down:
            return F.relu(self.conv2(F.relu(self.conv1(x))) + x)
        out = self.conv2(F.relu(self.conv1(x, stride=2, padding=0)))
        shortcut = F.avg_pool2d(x, 2, 2)
        if shortcut.shape[-2:] != out.shape[-2:]:  # one zero row (bottom) and column (right)
            out = F.pad(out, (0, 1, 0, 1))
        if shortcut.shape[1] != out.shape[1]:
            shortcut = torch.cat([shortcut, torch.zeros_like(shortcut)], dim=1)
        return F.relu(shortcut + out)


# (name, in channels, out channels, down-sampling) of the residual blocks, in order
BLOCKS = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)


class FaceRecognitionNet(nn.Module):
    """Face descriptor: N×3×150×150 RGB in [0, 1] → N×128 (not normalized; compare by Euclidean distance)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv32_down = ConvScale(3, 32, 7)
        for name, in_channels, out_channels, down in BLOCKS:
            self.add_module(name, Residual(in_channels, out_channels, down))
        self.fc = nn.Parameter(torch.zeros(256, DESCRIPTOR_SIZE))
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise InputError(
                f"the face recognizer takes N×3×{INPUT_SIZE}×{INPUT_SIZE} RGB faces, got {tuple(x.shape)}; "
                "crop faces with advrobust.faces.crop_face"
            )
        out = (x * 255 - self.mean_rgb) / 255
        out = F.relu(self.conv32_down(out, stride=2, padding=0))
        out = F.max_pool2d(out, 3, 2)
        for name, *_ in BLOCKS:
            out = getattr(self, name)(out)
        return out.mean(dim=(2, 3)) @ self.fc


def face_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between descriptors (broadcast over leading dimensions)."""
    return (a - b).norm(dim=-1)
