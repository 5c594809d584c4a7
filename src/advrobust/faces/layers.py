"""Parameter holders named as in the TensorFlow.js weight files, so a converted file loads by name.

A TF.js tensor ``conv32_1/conv1/conv/filters`` becomes the state-dict entry
``conv32_1.conv1.conv.filters`` (in PyTorch layout, see :func:`advrobust.models.tfjs.to_torch_layout`).
"""

from __future__ import annotations

import torch
from torch import nn


class Conv(nn.Module):
    """A convolution's ``filters`` (out×in×k×k) and ``bias`` (out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.filters = nn.Parameter(torch.zeros(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))


class SeparableConv(nn.Module):
    """A depthwise 3×3 filter (C×1×3×3), a pointwise filter (out×C×1×1) and the output ``bias``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise_filter = nn.Parameter(torch.zeros(in_channels, 1, 3, 3))
        self.pointwise_filter = nn.Parameter(torch.zeros(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))


class Scale(nn.Module):
    """A per-channel scale layer's ``weights`` and ``biases`` (C each)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(channels))
        self.biases = nn.Parameter(torch.zeros(channels))


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> list[int]:
    """TF's "same" padding of an N×C×H×W tensor as ``F.pad`` amounts: the total split with the extra pixel after."""
    pads: list[int] = []
    for size in (x.shape[-1], x.shape[-2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return pads


def channel_affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x · weight + bias`` per channel of an N×C×H×W tensor (the scale layer of dlib's ResNet)."""
    return x * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
