"""Wearable supports on a face crop: eyeglass frames placed on the face's own eyes.

    mask = eyeglass_mask(face)                   # 1×1×150×150, the frames over this face's eyes
    attack = ar.attacks.PGD(ar.Masked(mask), steps=100)

Sharif, Bhagavatula, Bauer & Reiter (2016, "Accessorize to a crime", §4.2) print the perturbation
on eyeglass frames covering about 6.5% of the face image. Here the frames of
:func:`advrobust.masks.eyeglasses` are scaled so that the rims are centred on the two eyes of the
68-point landmarks (points 36–41 and 42–47), mapped into the recognizer's 150×150 crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from advrobust.errors import InputError
from advrobust.faces.images import Box
from advrobust.faces.pipeline import Face
from advrobust.masks import eyeglasses
from advrobust.transforms.geometric import similarity_inverse, warp

#: the 68-point scheme's eye contours (iBUG 300-W): the right eye of the person, then the left
_EYES = (slice(36, 42), slice(42, 48))


def eyes_in_crop(face: Face, region: Box | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """The two eye centres (2×2, x then y) in the pixels of ``face.crop``, or of an ``size = (h, w)``
    image showing the ``region`` (x, y, width, height; photo pixels) of the photo (a scene around the
    face: :func:`advrobust.faces.physical.face_scene`)."""
    x, y, w, h = face.aligned if region is None else region
    height, width = face.crop.shape[-2:] if size is None else size
    scale = torch.tensor([width / w, height / h], dtype=torch.float64)
    origin = torch.tensor([x, y], dtype=torch.float64)
    centres = torch.stack([face.landmarks[part].double().mean(0) for part in _EYES])
    return (centres - origin) * scale


#: the mean adult interpupillary distance in millimetres: the default scale of printed frames
EYE_DISTANCE_MM = 63.0


_EYE_LINE = 0.38  # the eye line's height in the frame's box, from its top


@dataclass(frozen=True)
class _FramePose:
    """Where the frames sit in an ``h×w`` image: the eyes' midpoint ``(cx, cy)``, their distance
    (pixels), the eye line's angle ``theta`` (radians) and the level frame's box ``(x0, y0, x1, y1)``
    before it is turned by ``theta`` about the midpoint."""

    cx: float
    cy: float
    distance: float
    theta: float
    box: tuple[float, float, float, float]
    h: int
    w: int


def _frame_pose(face: Face, region: Box | None, size: tuple[int, int] | None) -> _FramePose:
    (lx, ly), (rx, ry) = eyes_in_crop(face, region, size).tolist()
    if rx < lx:
        (lx, ly), (rx, ry) = (rx, ry), (lx, ly)
    distance = math.hypot(rx - lx, ry - ly)
    if distance < 1:
        raise InputError(f"eyeglass_mask: the face's eyes are {distance:.2g} pixels apart in its crop; "
                         "the frames are placed from the 68 landmarks, check them (face.landmarks)")
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    width = distance / 0.4
    h, w = face.crop.shape[-2:] if size is None else size
    box = (cx - width / 2, cy - _EYE_LINE * width, cx + width / 2, cy + (1 - _EYE_LINE) * width)
    return _FramePose(cx, cy, distance, math.atan2(ry - ly, rx - lx), box, int(h), int(w))


def eyeglass_mask(
    face: Face, thickness: float = 0.04, region: Box | None = None, size: tuple[int, int] | None = None
) -> Tensor:
    """Eyeglass frames (``1×1×H×W``) over the eyes of ``face`` in its crop (or in the image of
    ``region`` at ``size``, as :func:`eyes_in_crop`), tilted with the eye line: the frame's box is 2.5
    times as wide as the eyes are apart (so the rims, at 30% and 70% of it, sit on the eyes) and
    square, its eye line through the eyes; ``thickness`` is the rim's width over the box's width.
    Parts of the frame outside the image are cut off."""
    pose = _frame_pose(face, region, size)
    h, w = pose.h, pose.w
    level = eyeglasses((h, w), pose.box, thickness=thickness, eye_line=_EYE_LINE)
    # rotate the level frame about the eyes' midpoint with the transforms' own similarity warp
    # (q ↦ R q + c − R c, in pixels about the crop's centre), then back to 0/1
    c = torch.tensor([[pose.cx - w / 2, pose.cy - h / 2]], dtype=torch.float64)
    theta = pose.theta
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                            dtype=torch.float64)
    angle = torch.tensor([theta], dtype=torch.float64)
    matrix = similarity_inverse(angle, torch.ones_like(angle), c - c @ rotation.T, h, w)
    return (warp(level.double(), matrix) >= 0.5).to(level.dtype)


@dataclass(frozen=True)
class PrintableFrames:
    """Frames cut out of an attacked image, level, ready for
    :func:`advrobust.report.printable.save_printable`: ``rgb`` (``3×h×w``), ``alpha`` (``h×w``, 1 on
    the frames) and ``width_mm``, the printed width at which they fit the face."""

    rgb: Tensor
    alpha: Tensor
    width_mm: float


def printable_frames(face: Face, image: Tensor, mask: Tensor, region: Box | None = None,
                     size: tuple[int, int] | None = None, eye_distance_mm: float = EYE_DISTANCE_MM) -> PrintableFrames:
    """The frames of ``mask`` (:func:`eyeglass_mask` of ``face`` with the same ``region`` and
    ``size``) cut out of ``image`` (``3×H×W``, the attacked crop or scene), turned level (the eye line
    horizontal) and cropped to the frames, one image pixel per output pixel (bilinear, so the
    rims' edges mix in a little of the face), with the frames' shape as ``alpha`` (parts that fell
    outside the image left out). ``width_mm``: the printed width at which the rims' centres are
    ``eye_distance_mm`` apart, as this person's eyes are (63 mm, the adult mean, by default; measure
    yours)."""
    if not eye_distance_mm > 0:
        raise InputError(f"printable_frames: eye_distance_mm must be > 0, got {eye_distance_mm!r}")
    pose = _frame_pose(face, region, size)
    if image.dim() != 3 or tuple(image.shape[-2:]) != (pose.h, pose.w) or tuple(mask.shape[-2:]) != (pose.h, pose.w):
        raise InputError(f"printable_frames: the image ({tuple(image.shape)}) and the mask ({tuple(mask.shape)}) "
                         f"must both be {pose.h}×{pose.w}, the picture the frames were placed in")
    x0, y0, x1, y1 = pose.box
    out_w, out_h = math.ceil(x1 - x0), math.ceil(y1 - y0)
    ys, xs = torch.meshgrid(torch.arange(out_h, dtype=torch.float64) + 0.5,
                            torch.arange(out_w, dtype=torch.float64) + 0.5, indexing="ij")
    dx, dy = x0 + xs - pose.cx, y0 + ys - pose.cy  # level, about the eyes' midpoint
    cos, sin = math.cos(pose.theta), math.sin(pose.theta)
    tx, ty = pose.cx + cos * dx - sin * dy, pose.cy + sin * dx + cos * dy  # turned onto the eye line
    grid = torch.stack([2 * tx / pose.w - 1, 2 * ty / pose.h - 1], dim=-1)[None]
    layers = torch.cat([image.double(), mask.reshape(1, pose.h, pose.w).double()])[None]
    sampled = F.grid_sample(layers, grid, align_corners=False, padding_mode="zeros")[0]
    alpha = (sampled[-1] >= 0.5).to(image.dtype)
    rows, cols = alpha.any(dim=1).nonzero()[:, 0], alpha.any(dim=0).nonzero()[:, 0]
    if rows.numel() == 0:
        raise InputError("printable_frames: the frames lie outside the picture; nothing to print")
    keep = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    alpha, rgb = alpha[keep], sampled[:-1].to(image.dtype)[(slice(None), *keep)]
    width_mm = alpha.shape[-1] * float(eye_distance_mm) / pose.distance  # the rims sit on the eyes
    return PrintableFrames(rgb * alpha, alpha, width_mm)
