"""Binary supports for masked and physical attacks: a rectangle, a round sticker, a user's PNG, and
eyeglass frames placed from a face box.

A mask is a float tensor of 0s and 1s, ``1×1×H×W`` (the same support on every channel) or ``1×C×H×W``;
builders for several faces at once (``eyeglasses`` with ``N`` boxes) return ``N×1×H×W``. Every mask
is checked by :func:`check_mask`: binary, not empty, the right size — each a one-line error.

The frames follow Sharif, Bhagavatula, Bauer & Reiter (2016, "Accessorize to a crime", §4.2):
eyeglass frames cover about 6.5% of a face image (``thickness`` sets it; the default frames cover
6–7% of the face box), placed from the face's box.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from advrobust.errors import InputError

Size = tuple[int, int]


def check_mask(mask: object, shape: Sequence[int] | None = None, owner: str = "mask") -> Tensor:
    """``mask`` as a float ``n×c×H×W`` tensor of 0s and 1s, checked.

    Accepts ``H×W``, ``c×H×W`` or ``n×c×H×W`` (bool, integer or float holding only 0 and 1). With
    ``shape`` (an image batch's ``(N, C, H, W)``), ``H×W`` must match and ``c`` be 1 or ``C``, ``n`` 1 or ``N``.
    """
    if not isinstance(mask, Tensor):
        raise InputError(f"{owner} must be a torch.Tensor of 0s and 1s, got {type(mask).__name__}")
    if mask.dim() not in (2, 3, 4):
        raise InputError(f"{owner} must have shape (H, W), (C, H, W) or (N, C, H, W), got {tuple(mask.shape)}")
    m = mask.reshape(*([1] * (4 - mask.dim())), *mask.shape)
    if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
        share = float(((m != 0) & (m != 1)).float().mean()) if not m.is_complex() else 1.0
        raise InputError(
            f"{owner} is not binary: {share:.1%} of its values are neither 0 nor 1 (threshold it, e.g. mask > 0.5)"
        )
    m = m.to(torch.get_default_dtype() if not m.dtype.is_floating_point else m.dtype)
    if not bool((m.flatten(1).sum(dim=1) > 0).all()):
        raise InputError(f"{owner} is empty: it selects no pixel (a masked attack could change nothing)")
    if shape is not None:
        n, c, h, w = shape
        if tuple(m.shape[-2:]) != (h, w):
            raise InputError(f"{owner} is {m.shape[-2]}×{m.shape[-1]} but the images are {h}×{w}: resize the mask")
        if m.shape[1] not in (1, c):
            raise InputError(f"{owner} has {m.shape[1]} channels but the images have {c}: give 1 or {c}")
        if m.shape[0] not in (1, n):
            raise InputError(f"{owner} holds {m.shape[0]} masks for {n} images: give 1 or {n}")
    return m


def _size(size: Size) -> Size:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"mask size must be (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"mask size must be positive, got {size!r}")
    return h, w


def _pixel_grid(size: Size) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates ``(xs, ys)``, each ``H×W``, in pixels (``0.5`` is the first centre)."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return xs, ys


def _checked_box(box: Sequence[float], owner: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"{owner}: a box is (x0, y0, x1, y1) in pixels, got {box!r}") from None
    if not (x1 > x0 and y1 > y0):
        raise InputError(f"{owner}: a box needs x1 > x0 and y1 > y0, got {box!r}")
    return x0, y0, x1, y1


def rectangle(size: Size, box: Sequence[float]) -> Tensor:
    """The pixels whose centres lie in ``box = (x0, y0, x1, y1)`` (pixels, ``x`` to the right): ``1×1×H×W``."""
    x0, y0, x1, y1 = _checked_box(box, "rectangle")
    xs, ys = _pixel_grid(_size(size))
    m = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return check_mask(m.float(), owner="rectangle mask")


def disc(size: Size, center: Sequence[float], radius: float) -> Tensor:
    """A round sticker: the pixels within ``radius`` pixels of ``center = (x, y)``: ``1×1×H×W``."""
    cx, cy = (float(v) for v in center)
    xs, ys = _pixel_grid(_size(size))
    m = (xs - cx).square() + (ys - cy).square() <= float(radius) ** 2
    return check_mask(m.float(), owner="disc mask")


def from_png(path: str | Path, size: Size | None = None, threshold: float | None = None) -> Tensor:
    """A user's mask image: white (or opaque, for a PNG with alpha) selects a pixel, black does not.

    The image must be black and white; pass ``threshold`` (in ``(0, 1)``) to binarize a grey one.
    ``size=(H, W)`` resizes it first (nearest neighbour). Returns ``1×1×H×W``.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            gray = img.getchannel("A") if "A" in img.getbands() else img.convert("L")
    except FileNotFoundError:
        raise InputError(f"mask file {str(p)!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"mask file {str(p)!r} is not a readable image: {exc}") from None
    if size is not None:
        h, w = _size(size)
        gray = gray.resize((w, h), Image.NEAREST)
    values = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8).reshape(gray.height, gray.width)
    v = values.float() / 255
    if threshold is not None:
        if not 0 < float(threshold) < 1:
            raise InputError(f"threshold must be in (0, 1), got {threshold!r}")
        v = (v > float(threshold)).float()
    return check_mask(v, owner=f"mask file {p.name!r}")


def eyeglasses(
    size: Size,
    face_boxes: Sequence[Sequence[float]] | Tensor,
    thickness: float = 0.036,
    eye_line: float = 0.38,
) -> Tensor:
    """Eyeglass frames drawn on faces, placed and scaled from each face's box ``(x0, y0, x1, y1)``.

    Two elliptical rims centred at 30% and 70% of the box's width on the eye line (``eye_line`` ×
    the box's height below its top), a bridge between them and temples out to the box's sides;
    ``thickness`` is the rim's width as a fraction of the box's width. One box gives ``1×1×H×W``,
    ``N`` boxes ``N×1×H×W`` (one frame per face, for per-image masks).
    """
    h, w = _size(size)
    boxes = torch.as_tensor(face_boxes, dtype=torch.float64)
    if boxes.dim() == 1:
        boxes = boxes[None]
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise InputError(f"eyeglasses: face boxes must be (N, 4) as (x0, y0, x1, y1), got {tuple(boxes.shape)}")
    if not 0 < thickness < 0.3:
        raise InputError(f"eyeglasses: thickness is a fraction of the face width in (0, 0.3), got {thickness!r}")
    xs, ys = (t.double() for t in _pixel_grid((h, w)))
    frames = []
    for box in boxes.tolist():
        x0, y0, x1, y1 = _checked_box(box, "eyeglasses")
        fw, fh = x1 - x0, y1 - y0
        t = thickness * fw
        cy = y0 + eye_line * fh
        a, b = 0.15 * fw, 0.1 * fh  # rim semi-axes
        m = torch.zeros(h, w, dtype=torch.bool)
        for cx in (x0 + 0.30 * fw, x0 + 0.70 * fw):
            dx, dy = xs - cx, ys - cy
            r = ((dx / a).square() + (dy / b).square()).sqrt()
            slope = ((dx / a**2).square() + (dy / b**2).square()).sqrt() / r.clamp_min(1e-9)
            inward = (1 - r) / slope.clamp_min(1e-9)  # ≈ distance inside the ellipse's edge
            m |= (inward >= -t / 2) & (inward <= t / 2)
        top = cy - b + t / 2  # the bridge joins the rims near their top, as frames do
        inner_l, inner_r = x0 + 0.30 * fw + a, x0 + 0.70 * fw - a
        m |= (xs >= inner_l - t) & (xs <= inner_r + t) & (ys >= top - t / 2) & (ys <= top + t / 2)
        outer_l, outer_r = x0 + 0.30 * fw - a, x0 + 0.70 * fw + a
        temple = (ys >= cy - b / 2 - t / 2) & (ys <= cy - b / 2 + t / 2)
        m |= temple & (((xs >= x0) & (xs <= outer_l)) | ((xs >= outer_r) & (xs <= x1)))
        frames.append(m)
    out = torch.stack(frames)[:, None].float()
    return check_mask(out, owner="eyeglasses mask")


def coverage(mask: Tensor, box: Sequence[float] | None = None) -> float:
    """The fraction of the image (or of ``box``, in pixels) that the first mask covers."""
    m = check_mask(mask)[0].amax(dim=0)
    if box is None:
        return float(m.mean())
    x0, y0, x1, y1 = _checked_box(box, "coverage")
    return float(m.sum()) / ((x1 - x0) * (y1 - y0))
