"""Face images in and out: decode a photo, cut a face out of it as face-api does, write a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from advrobust.errors import InputError
from advrobust.faces.recognition import INPUT_SIZE
from advrobust.faces.resize import pad_to_square, resize_bilinear

Box = tuple[float, float, float, float]  # (x, y, width, height) in pixels


def load_image(path: str | Path) -> torch.Tensor:
    """The photo at ``path`` as a 3×H×W float32 RGB tensor in [0, 1] (decoded by Pillow)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such image file") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not an image Pillow can read ({exc})") from exc
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write a 3×H×W tensor in [0, 1] as an 8-bit PNG (values rounded)."""
    from PIL import Image

    pixels = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(pixels).save(path)
    return Path(path)


def clip_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """face-api's ``clipAtImageBorders``: the box cut at the image borders, each of x, y, w, h floored."""
    x, y, w, h = box
    left, top = max(x, 0.0), max(y, 0.0)
    clipped_w = min(x + w - left, width - left)
    clipped_h = min(y + h - top, height - top)
    return math.floor(left), math.floor(top), math.floor(clipped_w), math.floor(clipped_h)


def crop_face(image: torch.Tensor, box: Box, size: int = INPUT_SIZE) -> torch.Tensor:
    """The face in ``box`` of ``image`` (3×H×W or N×3×H×W) as an N×3×size×size input (the recognizer's: 150).

    As face-api: the box clipped and floored, cut out, zero-padded to a square (centred) and resized
    with TF's legacy bilinear resize. Differentiable with respect to ``image``.
    """
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    x, y, w, h = clip_box(box, batch.shape[-1], batch.shape[-2])
    if w <= 0 or h <= 0:
        raise InputError(f"face box {box} lies outside the {batch.shape[-1]}×{batch.shape[-2]} image")
    face = batch[..., y : y + h, x : x + w]
    return resize_bilinear(pad_to_square(face, centered=True), size)
