"""Which path scores a batch of edits: a cost model of CPU time from the layers' shapes, never a timing.

One-Pixel and Square can score their edits three ways (:mod:`advrobust.runtime.local_forward`,
:mod:`advrobust.runtime.square_edits`): a frozen copy of the whole model on painted images, the crop
network on the edit's receptive field, or the changed regions layer by layer. All three compute the
model's function, but they round differently, so where an attack's accept test is a near tie the
path decides it. Chosen by timing, the path (and so the result) could differ between two runs with
one seed on one machine; chosen here, it depends only on the model's layer shapes and the rows per
call.

A path's CPU time for ``rows`` edits is modelled as ``calls · per_call + rows · (per_mac · macs +
per_moved · moved + per_value · values + per_row)`` (:class:`Rates`), from what one edit costs
(:class:`Work`): the convolutions' and the boundary's multiply-adds, the values gathered and pasted
(the changed regions read the unedited activations around the changed part; the crop network reads
the edit's crop), and the values the layers write (element-wise layers, masks, pools). Each path's
rates were fitted by ``benchmarks/bench_path_costs.py`` on the CPU time of the models of
:mod:`advrobust.models.zoo` (MNIST and 32×32 RGB) and the built-in architectures, one thread: of 420
timed pairs of paths (one-pixel edits; square edits of every side at 4, 32 and 512 rows) it picked the
faster in 396, and a wrong pick cost at most 1.37× the faster (near ties, or a few dozen rows).

The rates hold for the machine they were fitted on; on another CPU the model can pick the slower of
two close paths (never a wrong result: every path is checked against the plain model before use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advrobust.runtime.local_forward import _Axis, _Changed, _Graph


@dataclass(frozen=True)
class Work:
    """What one edit costs on a path: multiply-adds, values gathered or pasted, values written; and
    the operations each call runs whatever its rows (Python and dispatch overhead)."""

    macs: float
    moved: float
    values: float
    operations: int


@dataclass(frozen=True)
class Rates:
    """Microseconds of CPU time per unit of :class:`Work` (fitted by ``benchmarks/bench_path_costs.py``)."""

    per_mac: float
    per_moved: float
    per_value: float
    per_row: float
    per_operation: float

    def seconds(self, work: Work, rows: int) -> float:
        """The modelled CPU time of ``rows`` edits in one call."""
        per_row = (self.per_mac * work.macs + self.per_moved * work.moved + self.per_value * work.values
                   + self.per_row)
        return 1e-6 * (rows * per_row + work.operations * self.per_operation)


#: the frozen copy of the whole model on painted images
WHOLE = Rates(per_mac=2.58e-5, per_moved=4.69e-4, per_value=0.0, per_row=0.0, per_operation=590.0)
#: the frozen crop network on each edit's receptive field
CROP = Rates(per_mac=2.65e-5, per_moved=6.45e-3, per_value=7.8e-4, per_row=0.0, per_operation=0.0)
#: the changed regions, computed eagerly layer by layer
REGIONS = Rates(per_mac=3.92e-5, per_moved=5.21e-4, per_value=2.75e-3, per_row=7.68, per_operation=180.0)


def _conv_macs(graph: _Graph, s: int) -> int:
    """Multiply-adds per output position of step ``s`` (a convolution), all its output channels."""
    weight = graph.gm.get_parameter(str(graph.steps[s].call[0]))
    return math.prod(weight.shape)


def _boundary_macs(graph: _Graph, positions: int) -> int:
    """Multiply-adds of the boundary on ``positions`` positions of the last activation."""
    linear = graph.boundary.linear
    channels = graph.shapes[-1][1]
    return positions * channels * (linear.out_features if linear is not None else 1)


def whole_work(graph: _Graph) -> Work:
    """A painted image through the whole model (its local layers and the boundary)."""
    macs = sum(_conv_macs(graph, s) * math.prod(shape[2:])
               for s, shape in enumerate(graph.shapes) if graph.steps[s].kind == "conv")
    values = sum(math.prod(shape[1:]) for shape in graph.shapes)
    return Work(macs + _boundary_macs(graph, math.prod(graph.shapes[-1][2:])), values, values, 1)


def crop_work(graph: _Graph, rows: _Axis, cols: _Axis) -> Work:
    """One edit through the crop network (each step on its part of the window's receptive field)."""
    areas = [r * c for r, c in zip(rows.crop_size, cols.crop_size, strict=True)]
    macs = sum(_conv_macs(graph, s) * areas[s] for s, step in enumerate(graph.steps) if step.kind == "conv")
    values = sum(area * shape[1] for area, shape in zip(areas, graph.shapes, strict=True))
    return Work(macs + _boundary_macs(graph, rows.window * cols.window), areas[0] * graph.shapes[0][1], values, 1)


def regions_work(graph: _Graph, rows: _Changed, cols: _Changed) -> Work:
    """One edit through the changed regions (each step on the region of its output the edit changes,
    reading the unedited activations around its inputs' changed regions)."""
    areas = [r * c for r, c in zip(rows.size, cols.size, strict=True)]
    macs = sum(_conv_macs(graph, s) * areas[s] for s, step in enumerate(graph.steps) if step.kind == "conv")
    values = sum(area * shape[1] for area, shape in zip(areas, graph.shapes, strict=True))
    moved, operations = 0, 0
    for s, step in enumerate(graph.steps[1:], start=1):
        operations += 1
        if step.kind == "elementwise":
            continue
        for e, i in enumerate(step.inputs):
            moved += rows.length[s][e] * cols.length[s][e] * graph.shapes[i][1]
            operations += 1
    return Work(macs + _boundary_macs(graph, areas[-1]), moved, values, operations)
