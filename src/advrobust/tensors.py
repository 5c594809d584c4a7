"""Small tensor helpers shared by the threat models, the attacks and the models' fast paths."""

from __future__ import annotations

import torch
from torch import Tensor


def flat(t: Tensor) -> Tensor:
    """A batch ``N×…`` as ``N×D``."""
    return t.flatten(1) if t.dim() > 1 else t.reshape(t.shape[0], -1)


def per_point(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-point vector ``N`` so it broadcasts against a batch ``N×…``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def clamp_unit(x: Tensor) -> Tensor:
    """``x.clamp(0, 1)`` with the same gradient (``1`` where ``0 ≤ x ≤ 1``, ``0`` elsewhere), computed
    by one fused kernel: on a CPU, clamp's own backward builds two boolean masks and a ``where``, which
    took 5–8 ns a pixel here (four times the forward and backward of the multiplication before it);
    the saturating transformations of a physical scene run it on every EOT draw. Differentiable once."""
    return _UnitClamp.apply(x)


class _UnitClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # hardtanh's backward passes the gradient strictly inside (lo, hi); bounds one step outside
        # [0, 1] in x's dtype make that 0 ≤ x ≤ 1 (the smallest normal below 0, so that flushing
        # subnormals to zero cannot shut out exact zeros; only negative subnormals differ from clamp)
        info = torch.finfo(x.dtype)
        return torch.ops.aten.hardtanh_backward(grad, x, -info.tiny, 1.0 + info.eps)


def class_scores_argmax(z: Tensor) -> Tensor:
    """``z.argmax(dim=1)`` (the first maximal index, as :func:`torch.max` documents) computed as
    ``z.max(dim=1).indices``: on CPU the same result about four times faster for dense outputs
    ``N×K×H×W``, where ``argmax`` over a strided class axis is slow (it ran on every attack step)."""
    return z.max(dim=1).indices


def paint(flat_images: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
    """Set, in place, pixels ``pos`` (``R×k``, flat ``row·W + col``) of ``flat_images`` (``R×C×HW``) to
    ``vals`` (``R×k×C``); returns ``flat_images``."""
    r, c, _ = flat_images.shape
    index = pos[:, None, :].expand(r, c, pos.shape[1])
    return flat_images.scatter_(2, index, vals.transpose(1, 2).to(flat_images.dtype))


def painted_copies(images: Tensor, img: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
    """Copies of ``images[img]`` (``images``: ``B×C×H×W``) with pixels ``pos`` (``R×k``) set to
    ``vals`` (``R×k×C``), as :func:`paint` sets them: ``R×C×H×W``."""
    return paint(images.flatten(2).index_select(0, img), pos, vals).view(-1, *images.shape[1:])


def _square_index(top: Tensor, left: Tensor, side: int) -> tuple[Tensor, Tensor, Tensor]:
    """Advanced indices of one ``side×side`` square per row of a batch, at ``top``, ``left`` (``R``)."""
    rows = (top[:, None] + torch.arange(side, device=top.device))[:, :, None]
    cols = (left[:, None] + torch.arange(side, device=top.device))[:, None, :]
    return torch.arange(len(top), device=top.device)[:, None, None], rows, cols


def squares_of(images: Tensor, top: Tensor, left: Tensor, side: int) -> Tensor:
    """The ``side×side`` square at ``top``, ``left`` of each image (``R×C×H×W``): ``R×C×side×side``."""
    i, r, c = _square_index(top, left, side)
    return images[i, :, r, c].permute(0, 3, 1, 2)


def paint_squares(images: Tensor, top: Tensor, left: Tensor, patch: Tensor) -> Tensor:
    """Set, in place, the square at ``top``, ``left`` of each image (``R×C×H×W``) to ``patch``
    (``R×C×s×s``); returns ``images``."""
    i, r, c = _square_index(top, left, patch.shape[-1])
    images[i, :, r, c] = patch.permute(0, 2, 3, 1).to(images.dtype)
    return images


def painted_squares(images: Tensor, top: Tensor, left: Tensor, patch: Tensor) -> Tensor:
    """A copy of ``images`` with the squares of :func:`paint_squares` set."""
    return paint_squares(images.clone(), top, left, patch)
