"""Export a physical attack's texture ready to print, and a preview of it on test images.

:func:`save_printable` writes the texture as a PNG whose pixel size is its physical size times the
printer's resolution, with the resolution recorded in the file (the PNG ``pHYs`` chunk), so that
printing at "100%" gives the size asked for. Pixels are enlarged by nearest neighbour (no blur is
added before the printer's own). A round patch or a frame gets an alpha channel: transparent
outside its shape, ready to cut out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from advrobust.errors import InputError

MM_PER_INCH = 25.4


@dataclass(frozen=True)
class PrintSize:
    """What was written: the file, its pixels and its physical size at ``dpi``."""

    path: str
    width_px: int
    height_px: int
    dpi: float
    width_mm: float
    height_mm: float


def _to_pil(rgb: Tensor, alpha: Tensor | None):
    from PIL import Image

    if rgb.dim() != 3 or rgb.shape[0] not in (1, 3):
        raise InputError(f"a texture to export must be C×H×W with 1 or 3 channels, got {tuple(rgb.shape)}")
    arr = (rgb.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if arr.shape[0] == 1:
        arr = arr.expand(3, *arr.shape[1:])
    if alpha is not None:
        a = (alpha.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().reshape(1, *arr.shape[1:])
        arr = torch.cat([arr, a], dim=0)
    mode = "RGBA" if alpha is not None else "RGB"
    return Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), mode=mode)


def save_printable(
    texture: Tensor,
    path: str | Path,
    *,
    width_mm: float | None = None,
    width_in: float | None = None,
    dpi: float = 300.0,
    alpha: Tensor | None = None,
) -> PrintSize:
    """Write ``texture`` (``C×h×w`` in ``[0, 1]``) as a PNG ``width_mm`` millimetres (or ``width_in``
    inches) wide at ``dpi`` dots per inch, height in proportion; ``alpha`` (``h×w``, 0/1) makes the
    pixels outside the texture's shape transparent."""
    from PIL import Image

    if (width_mm is None) == (width_in is None):
        raise InputError("give the printed width once: width_mm or width_in")
    inches = float(width_in) if width_in is not None else float(width_mm) / MM_PER_INCH
    if not inches > 0 or not float(dpi) > 0:
        raise InputError(f"the printed width and the dpi must be positive, got {inches:g} in at {dpi:g} dpi")
    h, w = texture.shape[-2:]
    width_px = max(1, round(inches * float(dpi)))
    height_px = max(1, round(width_px * h / w))
    if width_px * height_px > 20000 * 20000:
        raise InputError(f"{width_px}×{height_px} pixels is too large to write: lower the dpi or the size")
    image = _to_pil(texture, alpha).resize((width_px, height_px), Image.NEAREST)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG", dpi=(float(dpi), float(dpi)))
    return PrintSize(str(out), width_px, height_px, float(dpi), width_px / float(dpi) * MM_PER_INCH,
                     height_px / float(dpi) * MM_PER_INCH)


def printable_texture(texture: object) -> tuple[Tensor, Tensor | None]:
    """The part of a trained :class:`~advrobust.attacks.patch.Texture` to print: a patch's texture
    (with its shape as alpha if round), a masked texture cropped to its mask's bounding box with the
    mask as alpha."""
    from advrobust.attacks.patch import MaskPlacement, RandomPlacement

    tex = texture.texture
    placement = texture.placement
    if isinstance(placement, RandomPlacement):
        return tex, placement.support(tex)
    if isinstance(placement, MaskPlacement):
        m = placement.masks.amax(dim=(0, 1)).to(tex)
        ys, xs = m.nonzero(as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        return tex[:, y0:y1, x0:x1], m[y0:y1, x0:x1]
    raise InputError(f"cannot export a texture placed by {type(placement).__name__}")


def save_preview(rows: list[Tensor], path: str | Path, scale: int = 4) -> Path:
    """A grid PNG: one row per batch in ``rows`` (each ``N×C×H×W``, e.g. clean images and the same
    images with the patch), enlarged ``scale`` times by nearest neighbour, 2-pixel gaps."""
    from PIL import Image

    if not rows or any(r.dim() != 4 for r in rows):
        raise InputError("a preview takes a list of image batches of shape (N, C, H, W)")
    n = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[-2:]
    gap = 2
    sheet = Image.new("RGB", (n * (w * scale + gap) + gap, len(rows) * (h * scale + gap) + gap), "white")
    for i, batch in enumerate(rows):
        for j in range(batch.shape[0]):
            tile = _to_pil(batch[j], None).resize((w * scale, h * scale), Image.NEAREST)
            sheet.paste(tile, (gap + j * (w * scale + gap), gap + i * (h * scale + gap)))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out
