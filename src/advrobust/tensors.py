"""Small tensor helpers shared by the threat models, the attacks and the models' fast paths."""

from __future__ import annotations

from torch import Tensor


def flat(t: Tensor) -> Tensor:
    """A batch ``N×…`` as ``N×D``."""
    return t.flatten(1) if t.dim() > 1 else t.reshape(t.shape[0], -1)


def per_point(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-point vector ``N`` so it broadcasts against a batch ``N×…``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


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
