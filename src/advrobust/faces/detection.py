"""face-api's tiny face detector (a Tiny-YOLOv2 with depthwise-separable convolutions), ported exactly.

Tiny YOLOv2 (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017) with MobileNet's
depthwise-separable convolutions (Howard et al., 2017), one class ("face") and 5 anchor boxes, as
trained and published by face-api (``tiny_face_detector_model``). The image is zero-padded at the
bottom/right to a square, resized to ``input_size`` (a multiple of 32, default 416) with TF's
legacy bilinear resize, normalized as ``(255·x − mean_rgb) / 255``, and mapped to an
``S×S`` grid (``S = input_size / 32``) of 5 anchors × (tx, ty, tw, th, objectness). Per cell
``(row, col)`` and anchor ``a`` (Redmon & Farhadi, eq. for b_x, b_y, b_w, b_h):
``score = σ(t_o)``, centre ``((col + σ(tx)) / S, (row + σ(ty)) / S)``, size
``(anchor_a.w · e^{tw} / S, anchor_a.h · e^{th} / S)``, relative to the image before padding.
Detections: score above the threshold (default 0.5), then greedy non-maximum suppression at IoU 0.4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advrobust.errors import InputError
from advrobust.faces.layers import Conv, SeparableConv, same_padding
from advrobust.faces.resize import js_round, pad_to_square, resize_bilinear

MEAN_RGB = (117.001, 114.697, 97.404)
ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061), (4.266906, 5.178857), (9.041765, 10.66308))
IOU_THRESHOLD = 0.4
DEFAULT_INPUT_SIZE = 416
DEFAULT_SCORE_THRESHOLD = 0.5
_CHANNELS = (16, 32, 64, 128, 256, 512)
_LEAK = 0.10000000149011612  # float32(0.1), as TF.js multiplies


def _leaky(x: torch.Tensor) -> torch.Tensor:
    low = x * _LEAK
    return F.relu(x - low) + low  # face-api's form of leaky ReLU (same rounding)


def _max_pool_same(x: torch.Tensor, stride: int) -> torch.Tensor:
    """2×2 max-pool with TF "same" padding (the extra row/column after, ignored by the max)."""
    return F.max_pool2d(F.pad(x, same_padding(x, 2, stride), value=float("-inf")), 2, stride)


class TinyFaceDetectorNet(nn.Module):
    """The network: N×3×S×S RGB in [0, 1] (already square and resized) → N×25×(S/32)×(S/32) raw outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = Conv(3, _CHANNELS[0], 3)
        for index in range(1, 6):
            self.add_module(f"conv{index}", SeparableConv(_CHANNELS[index - 1], _CHANNELS[index]))
        self.conv8 = Conv(_CHANNELS[-1], 5 * len(ANCHORS), 1)
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def _separable(self, x: torch.Tensor, layer: SeparableConv) -> torch.Tensor:
        out = F.conv2d(F.pad(x, (1, 1, 1, 1)), layer.depthwise_filter, groups=x.shape[1])
        return _leaky(F.conv2d(out, layer.pointwise_filter, layer.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (x * 255 - self.mean_rgb) / 255
        out = _max_pool_same(_leaky(F.conv2d(out, self.conv0.filters, self.conv0.bias)), 2)
        for index in range(1, 6):
            out = self._separable(out, getattr(self, f"conv{index}"))
            out = _max_pool_same(out, 2 if index < 5 else 1)
        return F.conv2d(out, self.conv8.filters, self.conv8.bias)


def detector_input(images: torch.Tensor, input_size: int) -> torch.Tensor:
    """Images N×3×H×W in [0, 1] as the detector sees them: padded bottom/right to a square, resized."""
    if input_size % 32:
        raise InputError(f"the detector's input size must be a multiple of 32, got {input_size}")
    return resize_bilinear(pad_to_square(images, centered=False), input_size)


def decode(raw: torch.Tensor, image_size: tuple[int, int], input_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every anchor's box and score logit from the raw output (differentiable).

    Returns ``boxes`` N×A×4 as ``(x, y, width, height)`` relative to the image (before padding) and
    ``logits`` N×A (the objectness before the sigmoid), A = cells × cells × anchors in row, column,
    anchor order.
    """
    n, _, cells, _ = raw.shape
    height, width = image_size
    scale = input_size / max(height, width)
    correction_x = input_size / js_round(width * scale)
    correction_y = input_size / js_round(height * scale)
    grid = raw.view(n, len(ANCHORS), 5, cells, cells).permute(0, 3, 4, 1, 2)  # N×row×col×anchor×5
    rows = torch.arange(cells, dtype=raw.dtype, device=raw.device).view(1, -1, 1, 1)
    cols = torch.arange(cells, dtype=raw.dtype, device=raw.device).view(1, 1, -1, 1)
    anchors = torch.tensor(ANCHORS, dtype=raw.dtype, device=raw.device)
    centre_x = (cols + torch.sigmoid(grid[..., 0])) / cells * correction_x
    centre_y = (rows + torch.sigmoid(grid[..., 1])) / cells * correction_y
    box_w = torch.exp(grid[..., 2]) * anchors[:, 0] / cells * correction_x
    box_h = torch.exp(grid[..., 3]) * anchors[:, 1] / cells * correction_y
    boxes = torch.stack([centre_x - box_w / 2, centre_y - box_h / 2, box_w, box_h], dim=-1)
    return boxes.reshape(n, -1, 4), grid[..., 4].reshape(n, -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of ``(x, y, width, height)`` boxes, broadcast over leading dimensions."""
    left = torch.maximum(a[..., 0], b[..., 0])
    top = torch.maximum(a[..., 1], b[..., 1])
    right = torch.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    bottom = torch.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = (right - left).clamp(min=0) * (bottom - top).clamp(min=0)
    return inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter)


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """Greedy NMS as face-api runs it: keep the best, drop boxes with IoU above the threshold, repeat."""
    order = sorted(range(len(scores)), key=lambda i: float(scores[i]))
    keep: list[int] = []
    while order:
        best = order.pop()
        keep.append(best)
        if order:
            ious = box_iou(boxes[best].unsqueeze(0), boxes[order])
            order = [i for i, iou in zip(order, ious.tolist(), strict=True) if iou <= iou_threshold]
    return keep


@dataclass(frozen=True)
class Detection:
    """A detected face: its box ``(x, y, width, height)`` in image pixels and its score in (0, 1)."""

    box: tuple[float, float, float, float]
    score: float


class TinyFaceDetector(nn.Module):
    """Images → face detections. ``forward`` gives the differentiable per-anchor boxes and score logits."""

    def __init__(self, net: TinyFaceDetectorNet | None = None, input_size: int = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        self.net = net or TinyFaceDetectorNet()
        self.input_size = input_size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` N×3×H×W in [0, 1] → (boxes N×A×4 relative to the image, score logits N×A)."""
        raw = self.net(detector_input(images, self.input_size))
        return decode(raw, tuple(images.shape[-2:]), self.input_size)

    @torch.no_grad()
    def detect(self, image: torch.Tensor, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> list[Detection]:
        """The faces in one image (3×H×W in [0, 1]), best first."""
        if image.dim() != 3 or image.shape[0] != 3:
            raise InputError(f"detect takes one 3×H×W RGB image in [0, 1], got shape {tuple(image.shape)}")
        return self.detect_batch(image.unsqueeze(0), score_threshold)[0]

    @torch.no_grad()
    def detect_batch(self, images: torch.Tensor, score_threshold: float = DEFAULT_SCORE_THRESHOLD
                     ) -> list[list[Detection]]:
        """The faces in each image of a batch (N×3×H×W in [0, 1]; one forward pass), best first."""
        all_boxes, all_logits = self(images)
        height, width = images.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float64)
        out = []
        for boxes, logits in zip(all_boxes, all_logits, strict=True):
            scores = torch.sigmoid(logits.double())
            chosen = torch.nonzero(scores > score_threshold).flatten()
            square = boxes[chosen].double() * self.input_size
            found = []
            for index in non_max_suppression(square, scores[chosen], IOU_THRESHOLD):
                box = boxes[chosen[index]].double() * scale
                found.append(Detection(tuple(box.tolist()), float(scores[chosen[index]])))
            out.append(found)
        return out
