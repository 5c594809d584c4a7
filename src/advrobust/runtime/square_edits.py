"""Scores of square edits of images that change between calls, computed on the changed region only.

Square (Andriushchenko et al. 2020, "Square Attack", ECCV) proposes, for every point, its current
image with one ``s×s`` window set to new values, and keeps the proposal when the loss improves. In a
CNN that change reaches a small region of each layer's output, so a whole forward pass mostly
recomputes what the current image already gave. This is incremental inference (Nakandala et al. 2019,
"Incremental and Approximate Inference for Faster Occlusion-based Deep CNN Explanations", SIGMOD:
their occlusion patch is our square), the changed-region path of
:mod:`advrobust.runtime.local_forward` grown from one pixel to an ``s×s`` square, on unedited images
that change:

1. kept per image: every local layer's activation (padded with the reading layer's fill), the last
   one ``A`` and the linear boundary's output ``Y0 = L(A)`` (a dense layer on the flattened ``A``, or
   the average over its positions);
2. per proposal: each layer computes only the region of its output the square changes, from the
   kept activations of its inputs with their own changed regions pasted in; then
   ``Y = Y0 + L(A'_region − A_region)`` (only the dense layer's columns for the region count) and the
   rest of the model runs on ``Y``;
3. when a proposal is accepted, its image becomes the point's unedited image: its activations are
   recomputed (one pass of the model's layers for those images).

On the MNIST CNN of Madry et al. (two 3×3 convolutions, each with a 2×2 max-pool) a 4×4 square
changes at most 6×6 of the second convolution's 14×14 output. Sides whose changed regions hold more
than half of the values the local layers compute (Square's first, large squares) are not offered:
they run as whole images. The model is analysed as for the one-pixel forward (a graph of local
layers into a dense layer or a global average: the same layers are supported, residual networks such
as the built-in ``small-resnet`` included); it is built only if its scores match the model's on
probe squares (corners and inside, the smallest and the largest side offered). The two round
differently: callers check each side on its first use against the plain model and confirm successes with it,
and choose between the edits and whole images by :meth:`SquareEdits.cheaper` (a cost model, never a timing).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from advrobust.runtime import path_cost
from advrobust.runtime.chunks import CPU_ROWS
from advrobust.runtime.frozen import same_scores
from advrobust.runtime.local_forward import (
    MAX_TABLE,
    _Changed,
    _changed,
    _ChangedRegions,
    _Graph,
    _graph,
    add_window_products,
    changed_share,
    flat_window,
    window_columns,
)
from advrobust.tensors import painted_squares, squares_of

Sides = dict[int, tuple[_Changed, _Changed]]


class SquareEdits:
    """Logits of the images ``base`` (``N×C×H×W``) with one square each replaced (see the module
    docstring). Build with :func:`square_edits`; call with ``(img, top, left, patch)``: per row, the
    index of its image, the square's first row and column, and its new values (``C×s×s``)."""

    def __init__(self, graph: _Graph, base: Tensor, sides: Sides) -> None:
        self.boundary, self.tail, self.sides = graph.boundary, graph.tail, sides
        self.side = min(sides)
        self.regions = _ChangedRegions(graph, *sides[self.side], base)
        self.width = base.shape[3]
        self.activation = torch.cat([graph.prefix(part) for part in base.split(CPU_ROWS)])
        self.outputs = self._linear(self.activation)
        self.scale = 1.0 / (self.activation.shape[2] * self.activation.shape[3])
        self.columns: dict[tuple[int, int], Tensor] = {}
        self.whole = path_cost.whole_work(graph)
        self.work = {side: path_cost.regions_work(graph, *changed) for side, changed in sides.items()}

    def offers(self, side: int) -> bool:
        """Whether squares of ``side`` are computed here (else: run them as whole images)."""
        return side in self.sides

    def cheaper(self, side: int, rows: int) -> bool:
        """Whether ``rows`` squares of ``side`` cost less CPU time here than as whole images on a frozen
        copy of the model, as modelled from the layers' shapes (:mod:`advrobust.runtime.path_cost`)."""
        return path_cost.REGIONS.seconds(self.work[side], rows) < path_cost.WHOLE.seconds(self.whole, rows)

    def _linear(self, activation: Tensor) -> Tensor:
        linear = self.boundary.linear
        return linear(activation.flatten(1)) if linear is not None else activation.mean(dim=(2, 3))

    @torch.no_grad()
    def __call__(self, img: Tensor, top: Tensor, left: Tensor, patch: Tensor) -> Tensor:
        side = patch.shape[-1]
        rows, cols = self.sides[side]
        if side != self.side:
            self.regions.use(rows, cols)
            self.side = side
        new = self.regions(img, top * self.width + left, patch)
        height, width = new.shape[2:]
        r0, c0 = rows.start[-1].index_select(0, top), cols.start[-1].index_select(0, left)
        r = (r0[:, None] + torch.arange(height))[:, :, None]
        c = (c0[:, None] + torch.arange(width))[:, None, :]
        delta = new - self.activation[img[:, None, None], :, r, c].permute(0, 3, 1, 2)
        dense = self.outputs.index_select(0, img)
        if self.boundary.linear is None:
            dense += delta.sum(dim=(2, 3)) * self.scale
            return self.tail(dense.view(-1, *self.boundary.shape))
        key = r0 * (self.activation.shape[3] - width + 1) + c0
        add_window_products(dense, flat_window(delta), key, self._columns(height, width))
        return self.tail(dense)

    def _columns(self, height: int, width: int) -> Tensor:
        if (height, width) not in self.columns:
            linear = self.boundary.linear
            assert linear is not None
            shape = tuple(self.activation.shape[1:])
            self.columns[height, width] = window_columns(linear, shape, height, width, channels_last=True)
        return self.columns[height, width]

    @torch.no_grad()
    def keep(self, rows: Tensor) -> None:
        """Make the proposals ``rows`` of the last call the unedited images (their changed regions
        pasted into the kept activations, the boundary's output recomputed from the last one)."""
        img, top, left, region = self.regions.keep(rows)
        rows_of, cols_of = self.sides[self.side][0].start[-1], self.sides[self.side][1].start[-1]
        r = (rows_of.index_select(0, top)[:, None] + torch.arange(region.shape[2]))[:, :, None]
        c = (cols_of.index_select(0, left)[:, None] + torch.arange(region.shape[3]))[:, None, :]
        self.activation[img[:, None, None], :, r, c] = region.permute(0, 2, 3, 1)
        self.outputs.index_copy_(0, img, self._linear(self.activation.index_select(0, img)))

    @torch.no_grad()
    def update(self, img: Tensor, images: Tensor) -> None:
        """Make ``images`` the unedited images of rows ``img`` (after accepted proposals)."""
        last = self.regions.update(img, images)
        self.activation.index_copy_(0, img, last)
        self.outputs.index_copy_(0, img, self._linear(last))


def _offered_sides(graph: _Graph) -> Sides:
    """The sides whose changed regions hold at most half of the values the local layers compute (and
    whose tables fit :data:`MAX_TABLE`), each with its changed regions per axis."""
    sizes = [shape[2:] for shape in graph.shapes]
    final = graph.shapes[-1]
    linear = graph.boundary.linear
    sides: Sides = {}
    for side in range(1, min(sizes[0])):
        rows = _changed(graph.steps, [s[0] for s in sizes], 0, side)
        cols = _changed(graph.steps, [s[1] for s in sizes], 1, side)
        height, width = rows.size[-1], cols.size[-1]
        table = (final[2] - height + 1) * (final[3] - width + 1) * final[1] * height * width
        too_large = linear is not None and table * linear.out_features > MAX_TABLE
        if too_large or changed_share(graph, rows, cols) > 0.5:
            break
        sides[side] = (rows, cols)
    return sides


def _common_padding(sides: Sides) -> Sides:
    """The same changed regions, read from inputs padded as much as the most any side needs (one
    copy of the kept activations serves every side)."""

    def widest(axis: int) -> list[list[tuple[int, int]]]:
        pads = [changed[axis].pad for changed in sides.values()]
        return [[(max(p[s][e][0] for p in pads), max(p[s][e][1] for p in pads)) for e in range(len(pads[0][s]))]
                for s in range(len(pads[0]))]

    def repadded(changed: _Changed, pad: list[list[tuple[int, int]]]) -> _Changed:
        origin = [[o - own[0] + new[0] for o, own, new in zip(origins, owns, news, strict=True)]
                  for origins, owns, news in zip(changed.origin, changed.pad, pad, strict=True)]
        return dataclasses.replace(changed, origin=origin, pad=pad)

    rows_pad, cols_pad = widest(0), widest(1)
    return {side: (repadded(rows, rows_pad), repadded(cols, cols_pad)) for side, (rows, cols) in sides.items()}


def _probe(base: Tensor, side: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Squares of ``side`` that check the edits: at the four corners and inside, each set to
    ``1 − value`` so that it changes, spread over the first images."""
    n, _, h, w = base.shape
    top = torch.tensor([0, 0, h - side, h - side, (h - side) // 2, 1 % (h - side + 1)])
    left = torch.tensor([0, w - side, 0, w - side, (w - side) // 3, (2 * (w - side)) // 3])
    img = torch.arange(len(top)) % n
    patch = 1 - squares_of(base.index_select(0, img), top, left, side)
    return img, top, left, patch


def square_edits(model: nn.Module, base: Tensor) -> SquareEdits | None:
    """A :class:`SquareEdits` of ``model`` for square edits of the images ``base``, or ``None`` when the
    model is not a graph of local layers into a linear boundary, when no side's changed regions hold
    at most half of the values, when its kept activations exceed :data:`MAX_TABLE`, or when its scores
    differ from the model's on probe squares (any failure to trace or run counts as a difference)."""
    try:
        with torch.no_grad():
            graph = _graph(model, base[:1])
            if len(base) * sum(math.prod(shape[1:]) for shape in graph.shapes) > MAX_TABLE:
                return None
            sides = _offered_sides(graph)
            if not sides:
                return None
            edits = SquareEdits(graph, base, _common_padding(sides))
            for side in sorted({min(sides), max(sides)}):
                img, top, left, patch = _probe(base, side)
                want = model(painted_squares(base.index_select(0, img), top, left, patch))
                if not same_scores(edits(img, top, left, patch), want):
                    return None
    except Exception:  # noqa: BLE001 - any failure to analyse, trace or run means: no square edits
        return None
    return edits
