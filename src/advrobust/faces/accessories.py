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

import torch
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


def eyeglass_mask(
    face: Face, thickness: float = 0.04, region: Box | None = None, size: tuple[int, int] | None = None
) -> Tensor:
    """Eyeglass frames (``1×1×H×W``) over the eyes of ``face`` in its crop (or in the image of
    ``region`` at ``size``, as :func:`eyes_in_crop`), tilted with the eye line: the frame's box is 2.5
    times as wide as the eyes are apart (so the rims, at 30% and 70% of it, sit on the eyes) and
    square, its eye line through the eyes; ``thickness`` is the rim's width over the box's width.
    Parts of the frame outside the image are cut off."""
    (lx, ly), (rx, ry) = eyes_in_crop(face, region, size).tolist()
    if rx < lx:
        (lx, ly), (rx, ry) = (rx, ry), (lx, ly)
    distance = math.hypot(rx - lx, ry - ly)
    if distance < 1:
        raise InputError(f"eyeglass_mask: the face's eyes are {distance:.2g} pixels apart in its crop; "
                         "the frames are placed from the 68 landmarks, check them (face.landmarks)")
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    width, eye_line = distance / 0.4, 0.38
    h, w = face.crop.shape[-2:] if size is None else size
    level = eyeglasses((h, w), (cx - width / 2, cy - eye_line * width, cx + width / 2, cy + (1 - eye_line) * width),
                       thickness=thickness, eye_line=eye_line)
    # rotate the level frame about the eyes' midpoint with the transforms' own similarity warp
    # (q ↦ R q + c − R c, in pixels about the crop's centre), then back to 0/1
    c = torch.tensor([[cx - w / 2, cy - h / 2]], dtype=torch.float64)
    theta = math.atan2(ry - ly, rx - lx)
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                            dtype=torch.float64)
    angle = torch.tensor([theta], dtype=torch.float64)
    matrix = similarity_inverse(angle, torch.ones_like(angle), c - c @ rotation.T, h, w)
    return (warp(level.double(), matrix) >= 0.5).to(level.dtype)
