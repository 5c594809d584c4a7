"""Semantic segmentation: the model returns per-pixel logits ``N×K×H×W``; ``y`` is a label map ``N×H×W``.

Pixels labelled ``ignore_index`` (default 255, the Pascal VOC / Cityscapes convention) take part in
nothing. The per-pixel objectives are those of classification (:mod:`advrobust.losses`) averaged over
an image's labelled pixels, so ``loss="ce"`` is the usual mean pixel cross-entropy.

An image counts as adversarial when at least ``min_fraction`` of its labelled pixels are
misclassified (untargeted) or take their target class (targeted, ``target`` a label map ``N×H×W``).
The default, 0.99, asks for nearly every pixel; the metrics (mIoU, pixel accuracy) report the rest.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.losses import Objective, get_loss
from advrobust.tasks.base import DenseView, Motion, Params, Task, integer_tensor, pulled_mean
from advrobust.tasks.classification import check_class_range
from advrobust.tensors import class_scores_argmax


class Segmentation(Task):
    """Per-pixel classification (Long et al. 2015, FCN). ``ignore_index``: the label of pixels that
    count for nothing; ``min_fraction``: the share of labelled pixels that must be fooled."""

    name = "segmentation"
    dense = True

    def __init__(self, ignore_index: int = 255, min_fraction: float = 0.99) -> None:
        if not 0.0 < float(min_fraction) <= 1.0:
            raise InputError(f"Segmentation: min_fraction must lie in (0, 1], got {min_fraction!r}")
        self.ignore_index = int(ignore_index)
        self.min_fraction = float(min_fraction)

    def _label_map(self, name: str, t: Any, x: Tensor) -> Tensor:
        t = integer_tensor(name, t, x.device, "class labels per pixel")
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        if t.dim() != 3 or tuple(t.shape) != (n, h, w):
            raise InputError(
                f"{name} must be a label map of shape ({n}, {h}, {w}), one class per pixel of x; got {tuple(t.shape)}"
            )
        return t

    def labels(self, y: Any, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise InputError(f"segmentation needs images of shape (N, C, H, W), got {tuple(x.shape)}")
        return self._label_map("y", y, x)

    def targets(self, target: Any, y: Tensor, x: Tensor) -> Tensor:
        target = self._label_map("target", target, x)
        counted = y != self.ignore_index
        if bool(((target == y) & counted).all(dim=(1, 2)).any()):
            raise InputError("the target map equals the label map on every labelled pixel of an image: it must differ")
        return target

    def check_output(self, out: Any, x: Tensor) -> Tensor:
        ok = isinstance(out, Tensor) and out.dim() == 4
        if not ok or out.shape[0] != x.shape[0] or out.shape[-2:] != x.shape[-2:]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(
                f"a segmentation model must return per-pixel scores of shape (N, classes, H, W) = "
                f"({x.shape[0]}, K, {x.shape[-2]}, {x.shape[-1]}); it returned {shape}"
            )
        return out

    def check_classes(self, z: Tensor, y: Tensor, target: Tensor | None, gradients: bool = True) -> None:
        k = z.shape[1]
        if k < 2:
            raise InputError(f"the model returns {k} score per pixel: a segmenter needs at least 2 classes")
        counted = y != self.ignore_index
        check_class_range(k, y=y[counted], target=None if target is None else target[counted])

    def _pixels(self, z: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """Flatten to ``(N·H·W)×K`` rows; ignored pixels get class 0 and a zero weight."""
        k = z.shape[1]
        counted = y != self.ignore_index
        rows = z.permute(0, 2, 3, 1).reshape(-1, k)
        yy = y.masked_fill(~counted, 0).reshape(-1)
        tt = None if target is None else target.masked_fill(~counted, 0).reshape(-1)
        return rows, yy, tt, counted

    def fooled(self, z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Per image: the fraction of labelled pixels misclassified (untargeted) or at their target."""
        pred = class_scores_argmax(z)
        counted = y != self.ignore_index
        hit = (pred != y) if target is None else (pred == target)
        total = counted.sum(dim=(1, 2)).clamp_min(1)
        return (hit & counted).sum(dim=(1, 2)).to(z.dtype) / total

    def is_adversarial(self, z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return self.fooled(z, y, target) >= self.min_fraction

    def objective(self, loss: str | Objective) -> Objective:
        per_pixel = get_loss(loss)
        # the named losses take any trailing dimensions after the class axis: they run on the maps
        # as they are (a softmax over the rows of a permuted copy was ~10× slower on CPU); a
        # user's callable gets the documented N×K rows
        on_maps = isinstance(loss, str)

        def mean_over_pixels(z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
            if on_maps:
                counted = y != self.ignore_index
                tt = None if target is None else target.masked_fill(~counted, 0)
                value = per_pixel(z, y.masked_fill(~counted, 0), tt) * counted
            else:
                rows, yy, tt, counted = self._pixels(z, y, target)
                value = per_pixel(rows, yy, tt).view(counted.shape) * counted
            return value.sum(dim=(1, 2)) / counted.sum(dim=(1, 2)).clamp_min(1)

        return mean_over_pixels

    def dense_logits(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], z.shape[1], -1)

    def follow(self, y: Tensor, transform: Motion, params: Params, size: tuple[int, int]) -> Tensor:
        """The label map moved with the picture (nearest neighbour); pixels moved in from outside
        the image are ignored."""
        return transform.move_map(y, params, self.ignore_index)

    def pull_back(self, z: Tensor, transform: Motion, params: Params, size: tuple[int, int],
                  draws: int = 1) -> Tensor:
        """Each pixel's scores from where it landed in each draw (bilinearly), averaged over the
        draws that kept it in the picture."""
        if tuple(z.shape[-2:]) != tuple(size):
            raise InputError(
                f"the model returns a {tuple(z.shape[-2:])} grid for {tuple(size)} images, not per-pixel scores: "
                "pass the task it does (a detector's grid is task='detection')"
            )
        return pulled_mean(z, torch.ones_like(z[:, :1]), transform, params, draws)

    def occlude(self, y: Tensor, covered: Tensor) -> Tensor:
        """Pixels under a pasted texture are ignored: the texture is not the object beneath it."""
        return y.masked_fill(covered, self.ignore_index)

    def class_target(self, c: int, y: Tensor) -> Tensor:
        return torch.full_like(y, int(c))

    def dense_view(self, z: Tensor, y: Tensor) -> DenseView:
        n = z.shape[0]
        counted = y != self.ignore_index
        return DenseView(self.dense_logits(z), y.masked_fill(~counted, 0).reshape(n, -1), counted.reshape(n, -1))

    def __repr__(self) -> str:
        return f"Segmentation(ignore_index={self.ignore_index}, min_fraction={self.min_fraction})"
