"""Input transformations used as defences, and the model behind one.

Bit-depth reduction and median smoothing are the "feature squeezing" of Xu, Evans & Qi (2018);
the JPEG round trip is Guo et al. (2018, "Countering adversarial images using input
transformations"). Quantization and JPEG have no useful gradient: as a forward pass their output
carries a zero gradient with respect to ``x`` (quantization's derivative almost everywhere), which
is what naive autograd gives an attacker — the "shattered gradients" of Athalye, Carlini & Wagner
(2018, §4.1). Attack such a model through :class:`advrobust.models.BPDA`, whose backward pass
replaces the transformation by the identity (or an approximation of your choosing).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.errors import InputError


def _with_zero_gradient(value: Tensor, x: Tensor) -> Tensor:
    """``value`` in the forward pass, a zero gradient w.r.t. ``x`` in the backward pass."""
    return value.detach() + 0 * x


class BitDepth(nn.Module):
    """Reduce each pixel to ``bits`` bits: ``round(x · (2^bits − 1)) / (2^bits − 1)`` (Xu et al. 2018,
    §3.1)."""

    def __init__(self, bits: int = 3) -> None:
        super().__init__()
        if not 1 <= int(bits) <= 8:
            raise InputError(f"BitDepth needs 1 <= bits <= 8, got {bits}")
        self.bits = int(bits)

    def forward(self, x: Tensor) -> Tensor:
        levels = 2**self.bits - 1
        return _with_zero_gradient(torch.round(x * levels) / levels, x)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class MedianFilter(nn.Module):
    """Median of each ``size × size`` neighbourhood, per channel, edges replicated (Xu et al. 2018,
    §3.2). Piecewise differentiable: the gradient flows to the pixel that is the median."""

    def __init__(self, size: int = 3) -> None:
        super().__init__()
        if int(size) < 2:
            raise InputError(f"MedianFilter needs size >= 2, got {size}")
        self.size = int(size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise InputError(f"MedianFilter takes images of shape (N, C, H, W), got {tuple(x.shape)}")
        k = self.size
        before, after = (k - 1) // 2, k // 2
        padded = F.pad(x, (before, after, before, after), mode="replicate")
        windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # N, C, H, W, k, k
        return windows.reshape(*windows.shape[:4], k * k).median(dim=-1).values

    def extra_repr(self) -> str:
        return f"size={self.size}"


class JPEG(nn.Module):
    """A JPEG round trip at ``quality`` (Pillow's encoder and decoder), per image, on 8-bit pixels.

    Gray images (1 channel) are encoded as gray JPEGs, 3-channel images as RGB."""

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        if not 1 <= int(quality) <= 95:
            raise InputError(f"JPEG needs 1 <= quality <= 95, got {quality}")
        self.quality = int(quality)

    def forward(self, x: Tensor) -> Tensor:
        from PIL import Image

        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise InputError(f"JPEG takes images of shape (N, 1 or 3, H, W), got {tuple(x.shape)}")
        pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = np.empty_like(pixels)
        for i, image in enumerate(pixels):
            mode = "L" if image.shape[2] == 1 else "RGB"
            buffer = io.BytesIO()
            Image.fromarray(image[:, :, 0] if mode == "L" else image, mode=mode).save(
                buffer, format="JPEG", quality=self.quality
            )
            decoded = np.asarray(Image.open(buffer).convert(mode))
            out[i] = decoded[:, :, None] if mode == "L" else decoded
        value = torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).to(x.dtype) / 255
        return _with_zero_gradient(value, x)

    def extra_repr(self) -> str:
        return f"quality={self.quality}"


class Preprocessed(nn.Module):
    """``x ↦ model(preprocess(x))``: a model defended by an input transformation, as deployed."""

    def __init__(self, preprocess: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(self.preprocess(x))
