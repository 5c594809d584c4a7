"""How l0 query attacks reach the model: scores of copies of their images with a few pixels replaced.

One-Pixel scores its candidates as edits of the images under attack. Each edit is one query of the
:class:`~advrobust.attacks.oracle.Oracle`. A one-pixel edit of a white-box model whose runner offers
a receptive-field forward (:meth:`~advrobust.runtime.runner.Runner.one_pixel_edits`: the CPU fast
path, for CNNs whose convolutional part is a graph of local layers into a dense layer or a global
average pool, such as the default MNIST CNN) is computed on the pixel's receptive field only; every
other edit is painted into a whole copy of its image and run through the oracle's runner. Both
compute the model's function up to float rounding, and attacks confirm every success with the plain
model. A plain runner (``RuntimePolicy(fast=False)`` or ``freeze=False``,
``ADVROBUST_FAST_FORWARD=0``) keeps every edit on whole images.
"""

from __future__ import annotations

from torch import Tensor

from advrobust.attacks.oracle import Oracle
from advrobust.runtime.local_forward import LocalForward
from advrobust.tensors import painted_copies


class PixelEdits:
    """Logits of edits of ``base`` (``B×C×H×W``): ``logits(img, pos, vals)`` for rows that set pixels
    ``pos`` (``R×k``, flat ``row·W + col``) of images ``img`` (``R``) to ``vals`` (``R×k×C``); a query
    of point ``points[img]`` each."""

    def __init__(self, oracle: Oracle, base: Tensor, points: Tensor, pixels: int) -> None:
        self.oracle, self.base, self.points = oracle, base, points
        self.local: LocalForward | None = None
        if pixels == 1 and oracle.access == "gradients":  # a white-box model: its runner may look inside
            self.local = oracle.runner.one_pixel_edits(base)

    def logits(self, img: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
        index = self.points.index_select(0, img)
        if self.local is None:
            return self.oracle.logits(painted_copies(self.base, img, pos, vals), index=index)
        self.oracle.count(len(img), index)
        return self.local(img, pos.view(-1), vals.view(len(img), -1))
