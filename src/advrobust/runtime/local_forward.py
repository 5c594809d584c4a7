"""Scores of one-pixel edits of known images, computed on the pixel's receptive field only.

One-Pixel scores hundreds of thousands of copies of a few images, each with one pixel replaced. In a
CNN that change reaches only a small window of every convolutional layer, so a full forward pass
mostly recomputes what the unedited image already gave. This is incremental inference, as in
Nakandala et al. 2019 ("Incremental and Approximate Inference for Faster Occlusion-based Deep CNN
Explanations", SIGMOD; their occlusion patch is our edited pixel), made exact for a model whose
convolutional part is a graph of spatially local layers that ends in a linear map of its last
activation ``A``: ``Flatten`` (or ``view``/``reshape`` to one row per image) into a ``Linear``, or
the average over all positions (global average pooling, Lin et al. 2014, "Network In Network"):

1. once per image: ``A`` of the unedited image and the linear map's output ``Y0 = L(A)``;
2. per edit at pixel ``(i, j)``: the window of ``A`` that holds every position the pixel can change
   (a fixed size for all pixels, placed by the pixel), recomputed from the crop of the edited image
   it depends on. Every layer computes the part of the window's receptive field its readers need;
   where two branches meet (a residual block, He et al. 2016) that is the union of their windows.
   Convolutions and pools run without padding on the crop; a crop's positions outside the layer's
   input are set to its padding value (0, or −∞ before a max-pool) first;
3. ``Y = Y0 + L_window(A'_window − A_window)``: ``L`` is linear, so only the dense layer's columns for
   the window count (or, for the average, the window's sum over the map's size); the rest of the
   model (activations, further dense layers) runs on ``Y``.

On the default MNIST CNN the window is 3×3 of the 7×7 last activation and the crop 18×18 of the
28×28 image: about 5× fewer multiply-adds. Measured on 8192 edits (``benchmarks/bench_fast_forward.py``):
2.1× the rows per second of the frozen copy of the whole model on painted images, 7× the plain model;
3.2× and 9.5× on the width-32 PGD-AT CNN. The crop network runs as a frozen copy
(:func:`advrobust.runtime.frozen.frozen_trace`) in passes of as many crop pixels as ``CPU_ROWS``
whole images hold.

Where the receptive field of the window covers most of the image (5×5 kernels, residual blocks),
recomputing it saves little. A second path then computes, layer by layer, only the region of each
output that the edit changes (a few positions per layer), reading the positions around it from the
unedited images' activations, kept padded per layer (:class:`_ChangedRegions`; Nakandala et al.'s
incremental inference proper). It runs eagerly (gathers and small convolutions), so it wins only
where the crop is large; both paths are checked on the probe edits, and the one with the lower CPU
time modelled from the layers' shapes is used (:mod:`advrobust.runtime.path_cost`; never a timing:
the paths round differently, and a run must not depend on the machine's momentary load). Where the
window covers more than half of the last activation (a ResNet's, whose receptive fields span the
image: the built-in ``small-resnet``), the crop network is not built, and the changed regions are
used if they hold at most half of the values the local layers compute and their modelled CPU time
is below a frozen copy of the whole model's (on ``small-resnet`` at 32×32: about half of it).

Supported layers (found by ``torch.fx`` tracing, the model's modes as they are), as modules or
functions: ``Conv2d``/``F.conv2d`` with the module's weights (zero padding), ``MaxPool2d``/
``F.max_pool2d``, ``AvgPool2d``/``F.avg_pool2d`` (no ``ceil_mode``), element-wise activations,
``BatchNorm2d`` and dropout in eval mode, arithmetic with per-channel constants (a normalization
layer), and sums or products of two activations of the same shape (residual connections). The
boundary reads the last activation only (``x.size(0)`` and ``x.shape`` for a ``view`` are allowed).
Anything else — data-dependent control flow, a branch that skips over the boundary, branches that
reach the boundary with different strides, edits whose window and changed regions both cover most
of the model — gives no local forward, and the caller runs the whole model. A
local forward is built only if its scores match the model's on probe edits at the image's corners
and inside it (:func:`advrobust.runtime.frozen.same_scores`); the two round differently, so callers
confirm successes with the plain model. Like the frozen copy, it runs none of the module's Python
side effects (hooks). :mod:`advrobust.models.zoo` holds CNNs written in these styles.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.modules.utils import _pair

from advrobust.runtime import path_cost
from advrobust.runtime.chunks import CPU_ROWS
from advrobust.runtime.frozen import CHECK_ROWS, frozen_trace, same_scores
from advrobust.tensors import painted_copies

#: the largest table kept (floats): the unedited images' crops and boundary outputs (``images × windows ×
#: (crop pixels + outputs)``), and the dense weight's columns per window (``windows × window size × outputs``)
MAX_TABLE = 1 << 26
_T = TypeVar("_T")
#: edits per pass of the changed-region path
REGION_ROWS = 2048
#: the most values of a convolution's change map (:meth:`_ChangedRegions._change_map`)
MAX_CHANGE_MAP = 1 << 22
#: the multiply-adds per value of its changed region a convolution must save to be run from the change (its
#: gathers and the addition cost about as much: measured on the zoo, a 5×5 kernel on 16 channels gains)
MIN_SAVED_PER_VALUE = 128

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity,
)
_EVAL_ELEMENTWISE_MODULES = (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)
_ELEMENTWISE_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.hardtanh,
    F.hardswish, F.softplus, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
    operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div,
}
_ELEMENTWISE_METHODS = {"relu", "sigmoid", "tanh", "add", "sub", "mul", "div"}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout2d}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
# the parameters of the functional convolution and pools, in order (after the input)
_CONV_ARGS = ("weight", "bias", "stride", "padding", "dilation", "groups")
_MAX_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_POOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")


class _Unsupported(Exception):
    """The model's convolutional part is not a graph of local layers into a linear boundary."""


@dataclass(frozen=True)
class _Step:
    """One local layer: its node, its kind, the steps it reads (indices; 0 is the image), per axis
    (kernel extent, stride, padding), its padding value and, for convolutions and pools, the
    arguments of the functional call that computes it without padding."""

    node: fx.Node | None
    kind: str  # "input", "conv", "max_pool", "avg_pool", "elementwise" (one input) or "merge" (two)
    inputs: tuple[int, ...] = ()
    axes: tuple[tuple[int, int, int], tuple[int, int, int]] = ((1, 1, 0), (1, 1, 0))
    fill: float = 0.0  # what the crop holds outside the layer's input
    call: tuple[object, ...] = field(default=())

    @property
    def padded(self) -> bool:
        return any(p > 0 for _, _, p in self.axes)


def _arguments(node: fx.Node, names: tuple[str, ...], defaults: dict[str, object]) -> dict[str, object]:
    """A functional call's arguments after the input, by name."""
    bound = dict(defaults)
    bound.update(zip(names, node.args[1:], strict=False))
    bound.update(node.kwargs)
    return bound


def _attr(gm: fx.GraphModule, target: str) -> object:
    return functools.reduce(getattr, target.split("."), gm)


def _weight(arg: object) -> str | None:
    """The attribute a convolution's weight or bias argument reads (``None`` for no bias)."""
    if arg is None:
        return None
    if isinstance(arg, fx.Node) and arg.op == "get_attr":
        return str(arg.target)
    raise _Unsupported("a convolution's weight is computed in forward")


def _conv(node: fx.Node, kernel: tuple[int, ...], weight: str, bias: str | None, stride: object, padding: object,
          dilation: object, groups: object, index: int) -> _Step:
    if isinstance(padding, str):
        raise _Unsupported("padding given as a string")
    k = kernel
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    axes = tuple((d[a] * (k[a] - 1) + 1, s[a], p[a]) for a in (0, 1))
    return _Step(node, "conv", (index,), axes, 0.0, (weight, bias, s, d, groups))


def _pool(node: fx.Node, kind: str, kernel: object, stride: object, padding: object, dilation: object,
          index: int, extra: tuple[object, ...] = ()) -> _Step:
    k, p, d = _pair(kernel), _pair(padding), _pair(dilation)
    s = _pair(stride or kernel)
    axes = tuple((d[a] * (k[a] - 1) + 1, s[a], p[a]) for a in (0, 1))
    return _Step(node, kind, (index,), axes, float("-inf") if kind == "max_pool" else 0.0, (k, s, d, *extra))


def _spatial_module(gm: fx.GraphModule, node: fx.Node, module: nn.Module, index: int) -> _Step:
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        bias = f"{node.target}.bias" if module.bias is not None else None
        return _conv(node, module.kernel_size, f"{node.target}.weight", bias, module.stride, module.padding,
                     module.dilation, module.groups, index)
    if isinstance(module, nn.MaxPool2d) and not module.ceil_mode and not module.return_indices:
        return _pool(node, "max_pool", module.kernel_size, module.stride, module.padding, module.dilation, index)
    if (isinstance(module, nn.AvgPool2d) and not module.ceil_mode
            and (module.count_include_pad or _pair(module.padding) == (0, 0))):
        return _pool(node, "avg_pool", module.kernel_size, module.stride, module.padding, 1, index,
                     (module.divisor_override,))
    batch_norm_ok = not isinstance(module, nn.BatchNorm2d) or module.running_mean is not None
    if isinstance(module, _ELEMENTWISE_MODULES) or (
        isinstance(module, _EVAL_ELEMENTWISE_MODULES) and not module.training and batch_norm_ok
    ):
        return _Step(node, "elementwise", (index,))
    raise _Unsupported(f"{type(module).__name__} is not a local layer")


def _constant_args_ok(gm: fx.GraphModule, node: fx.Node, data: list[fx.Node]) -> bool:
    """Whether every argument of ``node`` other than ``data`` is a constant the same at every pixel."""
    for arg in [*node.args, *node.kwargs.values()]:
        if any(arg is d for d in data):
            continue
        if isinstance(arg, fx.Node):
            value = _attr(gm, str(arg.target)) if arg.op == "get_attr" else None
            if not isinstance(value, Tensor) or not (
                value.numel() == 1 or (value.dim() >= 3 and value.shape[-1] == value.shape[-2] == 1)
            ):
                return False
        elif not isinstance(arg, int | float | bool | str | type(None)):
            return False
    return True


def _spatial_step(gm: fx.GraphModule, node: fx.Node, index: dict[fx.Node, int]) -> _Step:
    """``node`` as a local step reading the steps in ``index``; raises :class:`_Unsupported` otherwise."""
    data = [a for a in node.all_input_nodes if a in index]
    first = node.args[0] if node.args else None
    if node.op == "call_module":
        if node.args != (first,) or node.kwargs or first not in index:
            raise _Unsupported(f"{node.target} is called with extra arguments")
        return _spatial_module(gm, node, gm.get_submodule(str(node.target)), index[first])
    if node.op == "call_function" and first in index and len(data) == 1:
        if node.target is F.conv2d:
            a = _arguments(node, _CONV_ARGS, {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
            weight = str(_weight(a["weight"]))
            kernel = tuple(_attr(gm, weight).shape[2:])  # type: ignore[attr-defined]
            return _conv(node, kernel, weight, _weight(a["bias"]), a["stride"], a["padding"],
                         a["dilation"], a["groups"], index[first])
        if node.target is F.max_pool2d:
            a = _arguments(node, _MAX_POOL_ARGS, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                                                  "return_indices": False})
            if a["ceil_mode"] or a["return_indices"]:
                raise _Unsupported("a max-pool with ceil_mode or indices")
            return _pool(node, "max_pool", a["kernel_size"], a["stride"], a["padding"], a["dilation"], index[first])
        if node.target is F.avg_pool2d:
            a = _arguments(node, _AVG_POOL_ARGS, {"stride": None, "padding": 0, "ceil_mode": False,
                                                  "count_include_pad": True, "divisor_override": None})
            if a["ceil_mode"] or not (a["count_include_pad"] or _pair(a["padding"]) == (0, 0)):
                raise _Unsupported("an average pool with ceil_mode or uncounted padding")
            return _pool(node, "avg_pool", a["kernel_size"], a["stride"], a["padding"], 1, index[first],
                         (a["divisor_override"],))
        if node.target in _DROPOUT_FUNCTIONS and _arguments(node, ("p", "training"), {"training": True})["training"]:
            raise _Unsupported("dropout in training mode")
    elementwise = (node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS | _DROPOUT_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ELEMENTWISE_METHODS
    )
    if elementwise and 1 <= len(data) <= 2 and _constant_args_ok(gm, node, data):
        shape = node.meta["shape"]
        if any(d.meta["shape"] != shape for d in data):
            raise _Unsupported(f"{node.name} changes the shape or broadcasts")
        return _Step(node, "elementwise" if len(data) == 1 else "merge", tuple(index[d] for d in data))
    raise _Unsupported(f"{node.op} {node.target} is not a local layer")


@dataclass(frozen=True)
class _Boundary:
    """Where the local part ends: a linear map of the last local activation, and the graph after it.

    ``kind`` "dense": ``Flatten`` (or ``view``/``reshape`` to one row) into ``linear``; "mean": the
    average over all positions (global average pooling), of output shape ``shape`` per row."""

    kind: str
    node: fx.Node  # the node whose output the tail reads
    linear: nn.Linear | None = None
    shape: tuple[int, ...] = ()


def _is_global_mean(gm: fx.GraphModule, node: fx.Node, data: fx.Node) -> bool:
    """Whether ``node`` averages ``data`` over all its positions."""
    height, width = data.meta["shape"][2:]
    if node.op == "call_method" and node.target == "mean" or node.op == "call_function" and node.target is torch.mean:
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        return sorted(d % 4 for d in dims) == [2, 3] and node.kwargs.keys() <= {"dim", "keepdim"}
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        size = module.output_size if isinstance(module, nn.AdaptiveAvgPool2d) else None
        pool = isinstance(module, nn.AvgPool2d) and _pair(module.kernel_size) == (height, width) and not (
            module.divisor_override or _pair(module.padding) != (0, 0))
        return pool or (size is not None and _pair(size) == (1, 1))
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        return _pair(node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]) == (1, 1)
    if node.op == "call_function" and node.target is F.avg_pool2d:
        a = _arguments(node, _AVG_POOL_ARGS, {"stride": None, "padding": 0, "divisor_override": None})
        return _pair(a["kernel_size"]) == (height, width) and _pair(a["padding"]) == (0, 0) and not a[
            "divisor_override"]
    return False


def _boundary(gm: fx.GraphModule, node: fx.Node, data: fx.Node) -> _Boundary | None:
    """``node`` reading the local activation ``data`` as the boundary, or ``None`` if it is none."""
    if len(node.meta["shape"]) == 4 and node.meta["shape"][2:] != (1, 1):
        return None
    if _is_global_mean(gm, node, data):
        return _Boundary("mean", node, shape=tuple(node.meta["shape"][1:]))
    n, c, h, w = data.meta["shape"]
    flatten = (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target in _FLATTEN_METHODS) or (
        node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), nn.Flatten))
    if not flatten or tuple(node.meta["shape"]) != (n, c * h * w) or node.args[0] is not data:
        return None
    users = list(node.users)
    if len(users) != 1 or users[0].op != "call_module" or users[0].args != (node,) or users[0].kwargs:
        raise _Unsupported("the flattened activation does not feed one Linear")
    linear = gm.get_submodule(str(users[0].target))
    if not isinstance(linear, nn.Linear):
        raise _Unsupported("the flattened activation does not feed one Linear")
    return _Boundary("dense", users[0], linear=linear)


@dataclass(frozen=True)
class _Graph:
    """The model cut into its local steps (a graph: residual connections merge two of them), the
    boundary after the last one, and the subgraphs before and after it."""

    gm: fx.GraphModule
    steps: list[_Step]
    boundary: _Boundary
    prefix: fx.GraphModule  # image -> last local activation
    tail: fx.GraphModule  # the boundary's output -> the model's output
    shapes: list[tuple[int, ...]]  # every step's output shape (one row); the image's first


class _Shapes(fx.Interpreter):
    """Runs the graph once, keeping each tensor node's output shape in ``node.meta["shape"]`` (what
    ``torch.fx``'s ShapeProp records, without the symbolic-shapes machinery it imports)."""

    def run_node(self, n: fx.Node) -> object:
        result = super().run_node(n)
        if isinstance(result, Tensor):
            n.meta["shape"] = tuple(result.shape)
        return result


def _is_size_helper(node: fx.Node, index: dict[fx.Node, int]) -> bool:
    """``x.size(...)`` or ``x.shape``: reads an activation's shape, not its values."""
    return bool(node.args) and node.args[0] in index and (
        (node.op == "call_method" and node.target == "size")
        or (node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",)))


def _graph(model: nn.Module, example: Tensor) -> _Graph:
    gm = fx.symbolic_trace(model)
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise _Unsupported("the model takes more than one input")
    _Shapes(gm).run(example)
    steps = [_Step(inputs[0], "input")]
    index = {inputs[0]: 0}
    boundary = None
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr", "output") or not any(a in index for a in node.all_input_nodes):
            continue
        if _is_size_helper(node, index):
            continue
        data = [a for a in node.all_input_nodes if a in index]
        boundary = _boundary(gm, node, data[0]) if len(data) == 1 and node.args[:1] == (data[0],) else None
        if boundary is not None:
            last = data[0]
            break
        index[node] = len(steps)
        steps.append(_spatial_step(gm, node, index))
    if boundary is None or len(last.meta["shape"]) != 4:
        raise _Unsupported("no flatten into a Linear nor a global average after the local layers")
    if index[last] != len(steps) - 1:
        raise _Unsupported("the boundary reads an earlier activation")
    if not any(s.kind in ("conv", "max_pool", "avg_pool") for s in steps):
        raise _Unsupported("no spatial layer before the boundary")
    shapes = [tuple(s.node.meta["shape"]) for s in steps]
    prefix = _subgraph(gm, inputs[0], last)
    return _Graph(gm, steps, boundary, prefix, _subgraph(gm, boundary.node, None), shapes)


def _subgraph(gm: fx.GraphModule, start: fx.Node, end: fx.Node | None) -> fx.GraphModule:
    """The part of ``gm`` from ``start``'s value (the new input) to ``end`` (``None``: the output)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start: graph.placeholder("x")}

    def value(n: fx.Node) -> fx.Node:
        if n not in env:
            if n.op != "get_attr":
                raise _Unsupported(f"the model reads {n.name} after the boundary")
            env[n] = graph.get_attr(str(n.target))
        return env[n]

    nodes = list(gm.graph.nodes)
    for node in nodes[nodes.index(start) + 1:]:
        if node.op == "output":
            graph.output(fx.map_arg(node.args[0], value))
            break
        if node.op == "get_attr" or (end is not None and not _feeds(node, end)):
            continue
        env[node] = graph.node_copy(node, value)
        if node is end:
            graph.output(env[node])
            break
    return fx.GraphModule(gm, graph)


def _feeds(node: fx.Node, end: fx.Node) -> bool:
    """Whether ``end`` depends on ``node`` (a shape helper read only after the boundary does not)."""
    seen, todo = set(), [end]
    while todo:
        n = todo.pop()
        if n is node:
            return True
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return False


@dataclass(frozen=True)
class _Axis:
    """One spatial axis: where an edit's window of the last activation lies, and what every step
    computes for it.

    ``start[i]``: the window's first position for an edit at coordinate ``i``; step ``s`` computes the
    positions ``crop_start[s][key] + range(crop_size[s])`` of its output (``crop_start[0]``: the
    image crop's), and reads ``read_start[s][e] + range(read_size[s][e])`` of its ``e``-th input,
    which lie at ``offset[s][e]`` of what that input computed; ``valid[s][e]``: which of them lie
    inside that input."""

    start: Tensor
    window: int
    keys: int
    stride: int  # between the image crops of consecutive windows
    crop_start: list[Tensor]
    crop_size: list[int]
    offset: list[list[int]]
    read_size: list[list[int]]
    valid: list[list[Tensor]]


def _affected(step: _Step, intervals: list[tuple[int, int] | None], n_out: int, axis: int) -> tuple[int, int] | None:
    """The output positions of ``step`` that an edit reaching ``intervals`` of its inputs changes."""
    reached = [intervals[i] for i in step.inputs if intervals[i] is not None]
    if not reached:
        return None
    a, b = min(r[0] for r in reached), max(r[1] for r in reached)
    if step.kind in ("elementwise", "merge"):
        return a, b
    k, s, p = step.axes[axis]
    a, b = max(0, -((k - 1 - p - a) // s)), min(n_out - 1, (b + p) // s)  # outputs reading [a, b]
    return (a, b) if a <= b else None


def _intervals(steps: list[_Step], sizes: list[int], axis: int,
               extent: int = 1) -> list[list[tuple[int, int] | None]]:
    """Per input coordinate, per step: the interval of the step's output that an edit of ``extent``
    positions starting there changes."""
    every = []
    for i in range(sizes[0] - extent + 1):
        intervals: list[tuple[int, int] | None] = [(i, i + extent - 1)]
        for step, n_out in zip(steps[1:], sizes[1:], strict=True):
            intervals.append(_affected(step, intervals, n_out, axis))
        every.append(intervals)
    return every


@dataclass(frozen=True)
class _Changed:
    """One axis of the changed regions: per step, the size of the region of its output an edit
    changes (the largest over the edits) and where it starts for an edit at each input coordinate
    (moved inside the map where the map's edge cuts it); per read of a step's input, where the
    positions the region depends on start (``origin``, an index into the padded input) and how many
    there are, and where the input's own changed region lies among them (``offset``)."""

    size: list[int]
    start: list[Tensor]
    origin: list[list[Tensor]]
    length: list[list[int]]
    offset: list[list[Tensor]]
    pad: list[list[tuple[int, int]]]


def _changed(steps: list[_Step], sizes: list[int], axis: int, extent: int = 1) -> _Changed:
    """The changed regions along one axis of an edit of ``extent`` positions (a pixel: 1)."""
    every = _intervals(steps, sizes, axis, extent)
    size = [max([iv[s][1] - iv[s][0] + 1 for iv in every if iv[s] is not None], default=1) for s in range(len(steps))]
    start = [torch.tensor([min(iv[s][0], sizes[s] - size[s]) if iv[s] is not None else 0 for iv in every])
             for s in range(len(steps))]
    origin, length, offset, pad = [], [], [], []
    for s, step in enumerate(steps):
        k, st, p = step.axes[axis] if step.kind not in ("elementwise", "merge") else (1, 1, 0)
        first = start[s] * st - p
        n = (size[s] - 1) * st + k
        pads = [(max(0, -int(first.min())), max(0, int(first.max()) + n - sizes[i])) for i in step.inputs]
        origin.append([first + lo for lo, _ in pads])
        length.append([n] * len(step.inputs))
        offset.append([start[i] - first for i in step.inputs])
        pad.append(pads)
    return _Changed(size, start, origin, length, offset, pad)


def _axis(steps: list[_Step], sizes: list[int], axis: int) -> _Axis:
    """The windows along one axis of the steps' outputs of ``sizes`` (the image's first)."""
    last = len(steps) - 1
    spans = [intervals[last] for intervals in _intervals(steps, sizes, axis)]
    if any(span is None for span in spans):
        raise _Unsupported("a pixel that changes no output (a stride skips it)")
    window = max(b - a + 1 for a, b in spans)
    keys = sizes[last] - window + 1
    # what each step computes for the window starting at key t: positions t·stride + [lo, hi]
    need: list[tuple[int, int, int] | None] = [None] * len(steps)
    need[last] = (1, 0, window - 1)
    reads: list[list[tuple[int, int, int]]] = [[] for _ in steps]
    for s in range(last, 0, -1):
        if need[s] is None:
            continue
        stride, lo, hi = need[s]
        k, st, p = steps[s].axes[axis]
        for i in steps[s].inputs:
            read = (stride * st, lo * st - p, hi * st - p + k - 1) if steps[s].kind not in (
                "elementwise", "merge") else (stride, lo, hi)
            reads[s].append(read)
            if need[i] is not None and need[i][0] != read[0]:
                raise _Unsupported("two paths with different strides")
            need[i] = read if need[i] is None else (read[0], min(need[i][1], read[1]), max(need[i][2], read[2]))
    if any(n is None for n in need):
        raise _Unsupported("a layer that does not reach the boundary")
    t = torch.arange(keys)
    crop_start = [t * n[0] + n[1] for n in need]
    crop_size = [n[2] - n[1] + 1 for n in need]
    offset = [[r[1] - need[i][1] for r, i in zip(reads[s], steps[s].inputs, strict=True)] for s in range(len(steps))]
    read_size = [[r[2] - r[1] + 1 for r in reads[s]] for s in range(len(steps))]
    valid = [[((t * r[0] + r[1])[:, None] + torch.arange(r[2] - r[1] + 1) >= 0)
              & ((t * r[0] + r[1])[:, None] + torch.arange(r[2] - r[1] + 1) < sizes[i])
              for r, i in zip(reads[s], steps[s].inputs, strict=True)] for s in range(len(steps))]
    start = torch.tensor([min(a, keys - 1) for a, _ in spans])
    return _Axis(start, window, keys, need[0][0], crop_start, crop_size, offset, read_size, valid)


def _crop_network(graph: _Graph, rows: _Axis, cols: _Axis) -> fx.GraphModule:
    """The local steps on a crop: ``(crop, mask per padded read) -> window of the last activation``.
    Each step computes its part of the window's receptive field (:class:`_Axis`) from the part of its
    inputs it reads; convolutions and pools run without padding, each padded read set to the layer's
    fill outside ``mask`` (a product with a 0/1 mask for a zero fill, which keeps oneDNN's layout; a
    ``where`` for −∞, after which positions outside the map may hold −∞: they are set to 0)."""
    g = fx.Graph()
    values = [g.placeholder("crop")]
    masks = [g.placeholder(f"inside_{s}_{e}") for s, step in enumerate(graph.steps) for e in range(len(step.inputs))
             if step.padded]
    attrs: dict[str, fx.Node] = {}

    def attr(target: str | None) -> fx.Node | None:
        if target is not None and target not in attrs:
            attrs[target] = g.get_attr(target)
        return attrs.get(target) if target is not None else None

    step_of = {step.node: s for s, step in enumerate(graph.steps)}
    for s, step in enumerate(graph.steps[1:], start=1):
        reads = []
        for e, i in enumerate(step.inputs):
            h = values[i]
            (r0, c0), (rn, cn) = (rows.offset[s][e], cols.offset[s][e]), (rows.read_size[s][e], cols.read_size[s][e])
            if (r0, c0, rn, cn) != (0, 0, rows.crop_size[i], cols.crop_size[i]):
                h = g.call_function(operator.getitem, (h, (slice(None), slice(None), slice(r0, r0 + rn),
                                                           slice(c0, c0 + cn))))
            if step.padded and step.fill == 0:
                h = g.call_function(operator.mul, (h, masks.pop(0)))
            elif step.padded:
                h = g.call_function(torch.where, (masks.pop(0), h, step.fill))
            reads.append(h)
        values.append(_emit(g, step, reads, attr, step_of))
    g.output(values[-1])
    return fx.GraphModule(graph.gm, g)


def _emit(g: fx.Graph, step: _Step, reads: list[fx.Node], attr: Callable[[str | None], fx.Node | None],
          step_of: dict[fx.Node | None, int]) -> fx.Node:
    """``step``'s layer in ``g`` on its inputs' values ``reads``; convolutions and pools without padding."""
    if step.kind == "conv":
        weight, bias, stride, dilation, groups = step.call
        return g.call_function(F.conv2d, (reads[0], attr(weight), attr(bias), stride, 0, dilation, groups))
    if step.kind == "max_pool":
        kernel, stride, dilation = step.call
        h = g.call_function(F.max_pool2d, (reads[0], kernel, stride, 0, dilation))
        return g.call_function(torch.nan_to_num, (h,), {"neginf": 0.0}) if step.padded else h
    if step.kind == "avg_pool":
        kernel, stride, _, divisor = step.call
        return g.call_function(F.avg_pool2d, (reads[0], kernel, stride, 0, False, True, divisor))
    read = dict(zip(step.inputs, reads, strict=True))
    assert step.node is not None
    return g.node_copy(step.node, lambda n: attr(str(n.target)) if n.op == "get_attr" else read[step_of[n]])


def _layer(graph: _Graph, step: _Step) -> fx.GraphModule:
    """``step``'s layer alone: ``(its inputs' values) -> its output``, without padding."""
    g = fx.Graph()
    reads = [g.placeholder(f"input_{e}") for e in range(len(step.inputs))]
    attrs: dict[str, fx.Node] = {}

    def attr(target: str | None) -> fx.Node | None:
        if target is not None and target not in attrs:
            attrs[target] = g.get_attr(target)
        return attrs.get(target) if target is not None else None

    g.output(_emit(g, step, reads, attr, {st.node: s for s, st in enumerate(graph.steps)}))
    module = fx.GraphModule(graph.gm, g)
    module.training = False
    return module


def _transposed_weight(graph: _Graph, step: _Step) -> Tensor | None:
    """For a convolution of stride 1 and one group: its weight as the transposed convolution that
    maps a change of its input to the change of its output (taps flipped, in and out swapped), else
    ``None``."""
    if step.kind != "conv":
        return None
    weight, _, stride, _, groups = step.call
    if tuple(stride) != (1, 1) or groups != 1:
        return None
    return graph.gm.get_parameter(str(weight)).detach().flip(2, 3).transpose(0, 1).contiguous()


class _ChangedRegions:
    """Incremental inference proper (Nakandala et al. 2019): each step computes only the region of
    its output that the edit changes, from the positions of its inputs that region reads — the
    unedited images' activations (kept, padded with the layer's fill) with the input's own changed
    region pasted in. Cheaper than the crop network where a pixel's receptive field covers most of
    the image (large kernels, residual blocks) but its changed region stays small.

    A convolution of stride 1 that saves enough multiply-adds so (:data:`MIN_SAVED_PER_VALUE`) is
    computed from the change instead: ``conv(A + Δ) = conv(A) + conv(Δ)``, and ``conv(Δ)`` of an
    ``a×b`` change reaches ``(a + k − 1) × (b + k − 1)`` outputs (Nakandala et al.'s incremental
    convolution). It runs as one matrix product of the change with the convolution unrolled for that
    change (:meth:`_change_map`), added to the kept unedited output; for a 5×5 kernel on a 3×3 change
    that replaces recomputing the 7×7 region it reaches from 11×11 inputs (on the sequential CNN of
    :mod:`advrobust.models.zoo`, about an eighth less CPU time per edit). Where such a convolution
    feeds only a ReLU (any element-wise layer) that feeds only a max-pool (any layer reading without
    padding), the pool's read adds the change's contribution to the convolution's kept output itself
    and applies the ReLU there (:meth:`_fused_reads`).

    The kept activations are channels last and contiguous, so a region is one ``index_select`` of
    whole pixels and its changed part one ``index_copy_`` (or ``index_add_``); the layers run
    channels last."""

    def __init__(self, graph: _Graph, rows: _Changed, cols: _Changed, base: Tensor) -> None:
        self.steps, self.width = graph.steps, base.shape[3]
        self.layers = [_layer(graph, step) for step in graph.steps[1:]]
        # the convolutions that may run from the change (the most a change of one position saves is enough)
        self.transposed = {s: w for s, w in enumerate(_transposed_weight(graph, step) for step in graph.steps)
                           if w is not None and (w.shape[2] * w.shape[3] - 1) * w.shape[0] >= MIN_SAVED_PER_VALUE}
        self.maps: dict[tuple[int, int, int], Tensor] = {}  # per convolution and change size: its change map
        self.interpreter = fx.Interpreter(graph.gm, garbage_collect_values=False)
        self.use(rows, cols)
        activations = self.activations(base)
        self.padded = self._padded(activations)
        self.outputs = self._outputs(activations)  # the unedited outputs of the convolutions run from the change
        # the last call's edits (None: a step a fused read skipped)
        self.last: tuple[Tensor, Tensor, Tensor, list[Tensor | None]] | None = None

    def use(self, rows: _Changed, cols: _Changed) -> None:
        """Compute the changed regions of ``rows`` × ``cols`` (edits of another extent) from now on;
        they must pad each input as the first ones did."""
        self.rows, self.cols = rows, cols
        self.whole = [[bool((rows.offset[s][e] == 0).all() and (cols.offset[s][e] == 0).all())
                       and (rows.length[s][e], cols.length[s][e]) == (rows.size[i], cols.size[i])
                       for e, i in enumerate(step.inputs)] for s, step in enumerate(self.steps)]
        # per read and edit coordinate: the positions read (in the padded input), and where the
        # input's changed region lies among them (−1: outside)
        def spans(axis: _Changed) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
            read = [[o[:, None] + torch.arange(n) for o, n in zip(axis.origin[s], axis.length[s], strict=True)]
                    for s in range(len(self.steps))]
            into = []
            for s, step in enumerate(self.steps):
                places = [off[:, None] + torch.arange(axis.size[i]) for off, i in zip(axis.offset[s], step.inputs,
                                                                                        strict=True)]
                into.append([_inside_or_last(p, n) for p, n in zip(places, axis.length[s], strict=True)])
            return read, into

        (self.read_rows, self.into_rows), (self.read_cols, self.into_cols) = spans(rows), spans(cols)
        self.incremental = {s: (self._delta_spans(s, rows, 0), self._delta_spans(s, cols, 1), self._change_map(s))
                            for s in self.transposed if self._saved_per_value(s) >= MIN_SAVED_PER_VALUE
                            and self._map_size(s) <= MAX_CHANGE_MAP}
        self.fused = self._fused_reads()

    @property
    def skipped(self) -> set[int]:
        """The steps the fused reads compute inside themselves: each one's convolution and element-wise layer."""
        return {step for s, e, _, _ in self.fused.values() for step in (s, e)}

    def _saved_per_value(self, s: int) -> float:
        """The multiply-adds per value of convolution ``s``'s changed region that running it from the
        change saves: ``(kernel taps − change area) · input channels``."""
        i, weight = self.steps[s].inputs[0], self.transposed[s]
        return (weight.shape[2] * weight.shape[3] - self.rows.size[i] * self.cols.size[i]) * weight.shape[0]

    def _map_size(self, s: int) -> int:
        """The values of convolution ``s``'s change map (:meth:`_change_map`)."""
        i, weight = self.steps[s].inputs[0], self.transposed[s]
        a, b = self.rows.size[i], self.cols.size[i]
        return a * b * weight.shape[0] * (a + weight.shape[2] - 1) * (b + weight.shape[3] - 1) * weight.shape[1]

    def _fused_reads(self) -> dict[int, tuple[int, int, Tensor, Tensor]]:
        """The reads that add a convolution's change straight into what they read.

        Where a convolution ``s`` run from the change feeds only an element-wise layer ``e`` (a ReLU),
        which feeds only a layer ``r`` that reads a region around the change without padding (a
        max-pool), ``r`` gathers the kept *unedited output of s* over its region, adds the change's
        contribution where it lands and applies ``e`` itself: ``e(A + Δ)`` over the region, which is
        ``e(A)`` (the kept values) outside the change. That replaces gathering ``s``'s changed region,
        running ``e`` on it, then gathering ``e``'s kept output around it and pasting it in (on the
        sequential CNN of :mod:`advrobust.models.zoo`, 10–17% of the CPU time per edit).
        Per read ``r``: ``(s, e, rows, cols)``, with ``rows``/``cols`` per edit coordinate where each
        position of the change's contribution lies among the positions ``r`` reads (−1: outside)."""
        readers: dict[int, list[int]] = {}
        for r, step in enumerate(self.steps):
            for i in step.inputs:
                readers.setdefault(i, []).append(r)
        fused = {}
        for s in self.incremental:
            e = (readers.get(s) or [None])[0]
            if e is None or readers[s] != [e] or self.steps[e].kind != "elementwise":
                continue
            r = (readers.get(e) or [None])[0]
            if (r is None or readers[e] != [r] or self.steps[r].inputs != (e,) or r in self.incremental
                    or self.whole[r][0] or self.rows.pad[r][0] != (0, 0) or self.cols.pad[r][0] != (0, 0)):
                continue
            (_, _, reached_rows), (_, _, reached_cols), _ = self.incremental[s]
            fused[r] = (s, e, _compose(self.into_rows[r][0], reached_rows),
                        _compose(self.into_cols[r][0], reached_cols))
        return fused

    def _change_map(self, s: int) -> Tensor:
        """Convolution ``s`` as a matrix from its input's change (``a×b`` positions, channels last) to
        the transposed convolution's output (``(a + kernel − 1) × (b + kernel − 1)``, channels last):
        one matrix product per pass, no layout copies."""
        i, weight = self.steps[s].inputs[0], self.transposed[s]
        a, b, channels = self.rows.size[i], self.cols.size[i], weight.shape[0]
        key = (s, a, b)
        if key not in self.maps:
            basis = torch.eye(a * b * channels, dtype=weight.dtype).view(-1, a, b, channels).permute(0, 3, 1, 2)
            reached = F.conv_transpose2d(basis, weight, dilation=self.steps[s].call[3])
            self.maps[key] = reached.permute(0, 2, 3, 1).reshape(a * b * channels, -1).contiguous()
        return self.maps[key]

    def _delta_spans(self, s: int, axis: _Changed, which: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per edit coordinate, for convolution ``s`` run from the change: the positions of its input's
        changed region (in the padded input), of its output's (in the unpadded output), and where each
        position of the transposed convolution's output lies in the latter (−1: outside)."""
        i = self.steps[s].inputs[0]
        extent, _, padding = self.steps[s].axes[which]
        changed_in = axis.start[i][:, None] + axis.pad[s][0][0] + torch.arange(axis.size[i])
        changed_out = axis.start[s][:, None] + torch.arange(axis.size[s])
        first = axis.start[i] + padding - (extent - 1) - axis.start[s]  # the change's first output, in the region
        reached = _inside_or_last(first[:, None] + torch.arange(axis.size[i] + extent - 1), axis.size[s])
        return changed_in, changed_out, reached

    def activations(self, images: Tensor) -> list[Tensor]:
        """Every step's output for ``images`` (the image's first)."""
        parts: list[list[Tensor]] = [[] for _ in self.steps]
        for chunk in images.split(CPU_ROWS):
            self.interpreter.run(chunk)
            for s, step in enumerate(self.steps):
                parts[s].append(self.interpreter.env[step.node] if s else chunk)
        return [torch.cat(p) for p in parts]

    def _padded(self, activations: list[Tensor]) -> list[list[Tensor | None]]:
        """Per read: the unedited input, padded with the reading layer's fill, channels last and
        contiguous (``None`` for an element-wise layer: it reads only its input's changed region)."""
        rows, cols = self.rows, self.cols
        return [[F.pad(activations[i], (*cols.pad[s][e], *rows.pad[s][e]), value=step.fill).permute(0, 2, 3, 1)
                 .contiguous() if step.kind != "elementwise" else None
                 for e, i in enumerate(step.inputs)] for s, step in enumerate(self.steps)]

    def _outputs(self, activations: list[Tensor]) -> dict[int, Tensor]:
        """The unedited outputs of the convolutions that may run from the change, channels last."""
        return {s: activations[s].permute(0, 2, 3, 1).contiguous() for s in self.transposed}

    def update(self, img: Tensor, images: Tensor) -> Tensor:
        """Make ``images`` the unedited images ``img``; returns their last activation."""
        activations = self.activations(images)
        for kept, new in zip(self.padded, self._padded(activations), strict=True):
            for buffer, part in zip(kept, new, strict=True):
                if buffer is not None and part is not None:
                    buffer.index_copy_(0, img, part)
        for s, part in self._outputs(activations).items():
            self.outputs[s].index_copy_(0, img, part)
        return activations[-1]

    def keep(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Make the edits ``rows`` of the last call the unedited images (their changed regions pasted
        into the kept activations); returns those edits' images, first rows and columns of the edit,
        and the last step's changed regions."""
        assert self.last is not None
        img, ri, ci, values = (v.index_select(0, rows) if isinstance(v, Tensor) else v for v in self.last)
        values = [None if v is None else v.index_select(0, rows) for v in values]
        for s, e, _, _ in self.fused.values():  # what the fused reads skipped, for these edits alone
            values[s] = self._from_change(s, values[self.steps[s].inputs[0]], img, ri, ci)
            values[e] = self.layers[e - 1](values[s])
        for s, step in enumerate(self.steps):
            for e, i in enumerate(step.inputs):
                kept = self.padded[s][e]
                if kept is not None:
                    _paste(kept, img, self.rows.start[i].index_select(0, ri) + self.rows.pad[s][e][0],
                           self.cols.start[i].index_select(0, ci) + self.cols.pad[s][e][0], values[i])
        for s, kept in self.outputs.items():
            _paste(kept, img, self.rows.start[s].index_select(0, ri), self.cols.start[s].index_select(0, ci),
                   values[s])
        return img, ri, ci, values[-1]

    def __call__(self, img: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
        """The last step's changed region (``R×C×rows×cols``) for edits of images ``img`` whose
        first pixel is at ``pos`` (``row·W + col``), with the edit's values ``vals``
        (``R×C×extent×extent``; a pixel: ``R×C``)."""
        ri, ci = pos // self.width, pos % self.width
        values = [vals.reshape(len(pos), -1, self.rows.size[0], self.cols.size[0]).contiguous(
            memory_format=torch.channels_last)]
        skipped = self.skipped
        for s, (step, layer) in enumerate(zip(self.steps[1:], self.layers, strict=True), start=1):
            if s in skipped:  # computed inside the fused read that follows
                values.append(None)
            elif s in self.fused:
                values.append(layer(self._fused_read(s, values, img, ri, ci)))
            elif s in self.incremental:
                values.append(self._from_change(s, values[step.inputs[0]], img, ri, ci))
            else:
                values.append(layer(*[self._read(s, e, values[i], img, ri, ci) for e, i in enumerate(step.inputs)]))
        self.last = (img, ri, ci, values)
        return values[-1]

    def _read(self, s: int, e: int, changed: Tensor, img: Tensor, ri: Tensor, ci: Tensor) -> Tensor:
        """What step ``s`` reads of its ``e``-th input: the unedited values, the changed region pasted in."""
        if self.whole[s][e]:  # it reads exactly the input's changed region (an element-wise layer)
            return changed
        kept = self.padded[s][e]
        assert kept is not None
        rows, cols = self.read_rows[s][e].index_select(0, ri), self.read_cols[s][e].index_select(0, ci)
        region = _gather(kept, img, rows, cols)
        into = _places(self.into_rows[s][e].index_select(0, ri), self.into_cols[s][e].index_select(0, ci),
                       rows.shape[1], cols.shape[1])
        region.index_copy_(0, into.view(-1), changed.permute(0, 2, 3, 1).reshape(-1, kept.shape[3]))
        return region[:-1].view(len(img), rows.shape[1], cols.shape[1], kept.shape[3]).permute(0, 3, 1, 2)

    def _delta(self, s: int, changed: Tensor, img: Tensor, ri: Tensor, ci: Tensor) -> Tensor:
        """The change of convolution ``s``'s output (``R × positions·channels``, channels last) from its
        input's changed region: the change times the convolution's change map."""
        (in_rows, _, _), (in_cols, _, _), change_map = self.incremental[s]
        kept = self.padded[s][0]
        assert kept is not None
        unedited = _gather(kept, img, in_rows.index_select(0, ri), in_cols.index_select(0, ci))[:-1]
        return torch.mm(flat_window(changed) - unedited.view(len(img), -1), change_map)

    def _from_change(self, s: int, changed: Tensor, img: Tensor, ri: Tensor, ci: Tensor) -> Tensor:
        """Convolution ``s``'s changed region from its input's change: the unedited output plus the
        change times the convolution's change map."""
        (_, out_rows, reached_rows), (_, out_cols, reached_cols), _ = self.incremental[s]
        return self._added(s, self._delta(s, changed, img, ri, ci), img, out_rows.index_select(0, ri),
                           out_cols.index_select(0, ci), reached_rows.index_select(0, ri),
                           reached_cols.index_select(0, ci))

    def _fused_read(self, r: int, values: list[Tensor | None], img: Tensor, ri: Tensor, ci: Tensor) -> Tensor:
        """What step ``r`` reads where it is fused with the convolution and element-wise layer before
        it (:meth:`_fused_reads`): the element-wise layer on the convolution's unedited output over
        ``r``'s region with the change's contribution added."""
        s, e, places_rows, places_cols = self.fused[r]
        delta = self._delta(s, values[self.steps[s].inputs[0]], img, ri, ci)
        region = self._added(s, delta, img, self.read_rows[r][0].index_select(0, ri),
                             self.read_cols[r][0].index_select(0, ci), places_rows.index_select(0, ri),
                             places_cols.index_select(0, ci))
        return self.layers[e - 1](region)

    def _added(self, s: int, delta: Tensor, img: Tensor, rows: Tensor, cols: Tensor, places_rows: Tensor,
               places_cols: Tensor) -> Tensor:
        """Convolution ``s``'s unedited output at ``rows × cols`` with ``delta`` added at
        ``places_rows × places_cols`` among them (−1: outside), as ``R×C×rows×cols`` (channels last)."""
        output = self.outputs[s]
        region = _gather(output, img, rows, cols)
        into = _places(places_rows, places_cols, rows.shape[1], cols.shape[1])
        region.index_add_(0, into.view(-1), delta.view(-1, output.shape[3]))
        return region[:-1].view(len(img), rows.shape[1], cols.shape[1], -1).permute(0, 3, 1, 2)


def _inside_or_last(places: Tensor, size: int) -> Tensor:
    """``places``, with those outside ``[0, size)`` set to −1."""
    return torch.where((places >= 0) & (places < size), places, -1)


def _compose(into: Tensor, places: Tensor) -> Tensor:
    """Per edit coordinate, where ``places`` (positions in a region, −1: outside) lie among the
    positions a layer reads, ``into`` mapping the region's positions there (−1: outside)."""
    return torch.where(places >= 0, into.gather(1, places.clamp_min(0)), -1)


def _gather(kept: Tensor, img: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """The positions ``rows × cols`` (``R×r``, ``R×c``) of images ``img`` of ``kept`` (``N×H×W×C``), as
    ``R·r·c + 1`` rows of ``C`` values: the last row takes what lies outside a region pasted in."""
    height, width, channels = kept.shape[1:]
    flat = (img * (height * width))[:, None, None] + rows[:, :, None] * width + cols[:, None, :]
    region = torch.empty(flat.numel() + 1, channels, dtype=kept.dtype)
    torch.index_select(kept.view(-1, channels), 0, flat.view(-1), out=region[:-1])
    return region


def _places(rows: Tensor, cols: Tensor, r: int, c: int) -> Tensor:
    """Where positions ``rows × cols`` (``R×a``, ``R×b``; −1: outside) lie in a region gathered by
    :func:`_gather` of ``R × r × c`` positions: its last row for those outside."""
    n = len(rows)
    into = (torch.arange(n) * (r * c))[:, None, None] + rows[:, :, None] * c + cols[:, None, :]
    return torch.where((rows >= 0)[:, :, None] & (cols >= 0)[:, None, :], into, n * r * c)


def _paste(kept: Tensor, img: Tensor, rows: Tensor, cols: Tensor, values: Tensor) -> None:
    """Write ``values`` (``R×C×r×c``) into ``kept`` (``N×H×W×C``) at images ``img``, from the first
    rows ``rows`` and columns ``cols`` (``R`` each)."""
    height, width, channels = kept.shape[1:]
    r = rows[:, None] + torch.arange(values.shape[2])
    c = cols[:, None] + torch.arange(values.shape[3])
    flat = (img * (height * width))[:, None, None] + r[:, :, None] * width + c[:, None, :]
    kept.view(-1, channels).index_copy_(0, flat.view(-1), values.permute(0, 2, 3, 1).reshape(-1, channels))


class LocalForward:
    """Logits of copies of ``base`` images with one pixel replaced (see the module docstring).

    Build with :func:`local_forward`; call with ``(img, pos, vals)``: for each row, the index of its
    base image, the flat index ``row·W + col`` of the pixel, and its new values (``C``)."""

    def __init__(self, graph: _Graph, rows_axis: _Axis, cols_axis: _Axis, base: Tensor) -> None:
        self.rows_axis, self.cols_axis, self.tail, self.graph, self.base = rows_axis, cols_axis, graph.tail, graph, base
        ra, ca = rows_axis, cols_axis
        n, c, h, w = base.shape
        self.width, self.keys = w, ra.keys * ca.keys
        self.crop = _CropNetwork(graph, ra, ca, CPU_ROWS * h * w)
        self.regions: _ChangedRegions | None = None  # set: the window comes from the changed regions
        # per image and window: the crop of the unedited image ...
        top, left = -min(0, int(ra.crop_start[0].min())), -min(0, int(ca.crop_start[0].min()))
        bottom = max(0, int(ra.crop_start[0].max()) + ra.crop_size[0] - h)
        right = max(0, int(ca.crop_start[0].max()) + ca.crop_size[0] - w)
        padded = F.pad(base, (left, right, top, bottom))
        padded = padded[:, :, int(ra.crop_start[0][0]) + top:, int(ca.crop_start[0][0]) + left:]
        crops = padded.unfold(2, ra.crop_size[0], ra.stride).unfold(3, ca.crop_size[0], ca.stride)
        crops = crops[:, :, : ra.keys, : ca.keys].permute(0, 2, 3, 1, 4, 5)
        self.crops = crops.reshape(n * self.keys, c, ra.crop_size[0], ca.crop_size[0]).contiguous()
        # ... and the boundary's output without the window's part: Y0 − L(A_window)
        activation = torch.cat([graph.prefix(part) for part in base.split(CPU_ROWS)])
        windows = activation.unfold(2, ra.window, 1).unfold(3, ca.window, 1).permute(0, 2, 3, 1, 4, 5)
        windows = windows.reshape(n, self.keys, -1)
        self.boundary = graph.boundary
        if graph.boundary.linear is not None:  # dense: per window, its columns of W
            linear = graph.boundary.linear
            self.weight = window_columns(linear, tuple(activation.shape[1:]), ra.window, ca.window)
            outside = linear(activation.flatten(1))[:, None, :] - torch.einsum("bkf,kfo->bko", windows, self.weight)
        else:  # global average: the window's sum over the map's size
            self.scale = 1.0 / (activation.shape[2] * activation.shape[3])
            window_sum = windows.view(n, self.keys, activation.shape[1], -1).sum(3)
            outside = activation.mean(dim=(2, 3))[:, None, :] - window_sum * self.scale
        self.outside = outside.flatten(0, 1)
        self.weight_last: Tensor | None = None

    @torch.no_grad()
    def __call__(self, img: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
        if self.regions is None:
            key, rows_of, crops = self._edited(img, pos, vals)
            window = self.crop(crops, key)
        else:
            key, rows_of = self._keys(img, pos)
            window = torch.cat([self.regions(img[i:i + REGION_ROWS], pos[i:i + REGION_ROWS], vals[i:i + REGION_ROWS])
                                for i in range(0, len(img), REGION_ROWS)])
        dense = self.outside.index_select(0, rows_of)
        if self.boundary.linear is None:
            dense += window.flatten(2).sum(2) * self.scale
            return self.tail(dense.view(-1, *self.boundary.shape))
        if self.regions is None:
            add_window_products(dense, window.flatten(1), key, self.weight)
        else:
            add_window_products(dense, flat_window(window), key, self._weight_last())
        return self.tail(dense)

    def _weight_last(self) -> Tensor:
        """:attr:`weight` with each window's columns in channels-last order (the changed regions')."""
        if self.weight_last is None:
            linear = self.boundary.linear
            assert linear is not None
            self.weight_last = window_columns(linear, self.graph.shapes[-1][1:], self.rows_axis.window,
                                              self.cols_axis.window, channels_last=True)
        return self.weight_last

    def _edited(self, img: Tensor, pos: Tensor, vals: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each edit's window (``first row · column starts + first column`` in the last activation),
        its row of the per-image tables, and the edited image's crop that the window depends on
        (``R×C×crop rows×crop cols``)."""
        ra, ca = self.rows_axis, self.cols_axis
        ti, tj = ra.start.index_select(0, pos // self.width), ca.start.index_select(0, pos % self.width)
        key, rows_of = self._keys(img, pos)
        crops = self.crops.index_select(0, rows_of)  # a copy: painted in place
        r, c = crops.shape[:2]
        i = pos // self.width - ra.crop_start[0].index_select(0, ti)
        j = pos % self.width - ca.crop_start[0].index_select(0, tj)
        at = (i * ca.crop_size[0] + j).view(r, 1, 1).expand(r, c, 1)
        crops.view(r, c, -1).scatter_(2, at, vals.reshape(r, c, 1).to(crops.dtype))
        return key, rows_of, crops

    def changed_regions(self) -> _ChangedRegions | None:
        """The changed-region path for these images, or ``None`` when its kept activations exceed
        :data:`MAX_TABLE`."""
        graph, base = self.graph, self.base
        kept = sum(math.prod(shape[1:]) for shape in graph.shapes)
        if len(base) * kept > MAX_TABLE:
            return None
        sizes = [shape[2:] for shape in graph.shapes]
        rows = _changed(graph.steps, [s[0] for s in sizes], 0)
        cols = _changed(graph.steps, [s[1] for s in sizes], 1)
        return _ChangedRegions(graph, rows, cols, base)

    def _keys(self, img: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Each edit's window and its row of the per-image tables."""
        ti = self.rows_axis.start.index_select(0, pos // self.width)
        key = ti * self.cols_axis.keys + self.cols_axis.start.index_select(0, pos % self.width)
        return key, img * self.keys + key

    def crop_inputs(self, img: Tensor, pos: Tensor, vals: Tensor) -> tuple[Tensor, ...]:
        """The crop network's inputs for these edits (what it is traced with)."""
        key, _, crops = self._edited(img, pos, vals)
        return self.crop.inputs(crops, key)


def window_columns(linear: nn.Linear, shape: tuple[int, ...], rows: int, cols: int,
                   channels_last: bool = False) -> Tensor:
    """The columns of ``linear``'s weight that read each ``rows×cols`` window of its flattened
    input of ``shape`` (``C×H×W``): ``windows × (C·rows·cols) × outputs``, windows in row-major order
    of their first position; ``channels_last``: each window's columns in ``rows·cols·C`` order (a
    channels-last window then flattens without a copy, :func:`flat_window`)."""
    out = linear.out_features
    weight = linear.weight.detach().view(out, *shape)
    weight = weight.unfold(2, rows, 1).unfold(3, cols, 1)  # out, C, windows ×2, rows, cols
    weight = weight.permute(2, 3, 4, 5, 1, 0) if channels_last else weight.permute(2, 3, 1, 4, 5, 0)
    return weight.reshape(-1, shape[0] * rows * cols, out).contiguous()


def flat_window(window: Tensor) -> Tensor:
    """``window`` (``R×C×rows×cols``) as rows of ``rows·cols·C`` values (a view where it is channels last)."""
    return window.permute(0, 2, 3, 1).reshape(len(window), -1)


def add_window_products(dense: Tensor, window: Tensor, key: Tensor, weight: Tensor) -> None:
    """``dense[r] += window[r] @ weight[key[r]]`` for every row ``r`` (in place): the rows whose window
    starts at the same place share its weight columns (:func:`window_columns`), one product each."""
    order = key.argsort()
    window = window.index_select(0, order)  # grouped by key: each group a slice
    products = torch.empty(len(order), weight.shape[2], dtype=dense.dtype)
    start = 0
    for group, count in enumerate(torch.bincount(key, minlength=len(weight)).tolist()):
        if count:
            torch.mm(window[start:start + count], weight[group], out=products[start:start + count])
            start += count
    dense.index_add_(0, order, products)


def _inside(rows: Tensor, cols: Tensor, kind: type) -> Tensor:
    """``(windows, 1, rows, cols)``: which positions of each window's crop lie inside the input."""
    inside = (rows[:, None, :, None] & cols[None, :, None, :]).flatten(0, 1)[:, None]
    return inside.float() if kind is float else inside


class _CropNetwork:
    """The local steps on crops (:func:`_crop_network`) with each window's masks, in passes of a
    fixed pixel budget; runs eagerly until :meth:`freeze`."""

    def __init__(self, graph: _Graph, rows_axis: _Axis, cols_axis: _Axis, pass_pixels: int) -> None:
        self.network = _crop_network(graph, rows_axis, cols_axis)
        self.network.training = False  # for freezing; its layers have no mode-dependent behaviour left
        self.forward: Callable[..., Tensor] = self.network
        self.masks = [
            _inside(rows_axis.valid[s][e], cols_axis.valid[s][e], float if step.fill == 0 else bool)
            for s, step in enumerate(graph.steps)
            for e in range(len(step.inputs))
            if step.padded
        ]
        self.rows = max(1, pass_pixels // (rows_axis.crop_size[0] * cols_axis.crop_size[0]))

    def inputs(self, crops: Tensor, key: Tensor) -> tuple[Tensor, ...]:
        return (crops, *(m.index_select(0, key) for m in self.masks))

    def freeze(self, probe: tuple[Tensor, ...]) -> bool:
        """Run a frozen copy from now on (:func:`~advrobust.runtime.frozen.frozen_trace`); ``False`` if none."""
        frozen = frozen_trace(self.network, probe)
        if frozen is not None:
            self.forward = frozen
        return frozen is not None

    def __call__(self, crops: Tensor, key: Tensor) -> Tensor:
        rows = self.rows
        return torch.cat([self.forward(*self.inputs(crops[s:s + rows], key[s:s + rows]))
                          for s in range(0, len(crops), rows)])


def _probe(base: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Edits that check a local forward: the four corners, the centre and inner pixels, each set to
    ``1 − value`` so that it changes, spread over the first images."""
    n, c, h, w = base.shape
    rows = [0, 0, h - 1, h - 1, h // 2, min(1, h - 1), h // 3, (2 * h) // 3]
    cols = [0, w - 1, 0, w - 1, w // 2, min(1, w - 1), (2 * w) // 3, w // 3]
    pos = torch.tensor([r * w + q for r, q in zip(rows, cols, strict=True)][:CHECK_ROWS], device=base.device)
    img = torch.arange(len(pos), device=base.device) % n
    vals = 1 - base.flatten(2)[img, :, pos]
    return img, pos, vals


def local_forward(model: nn.Module, base: Tensor) -> LocalForward | None:
    """A :class:`LocalForward` of ``model`` for one-pixel edits of the images ``base`` (``N×C×H×W``),
    or ``None`` when the model's convolutional part is not a graph of local layers into a dense layer
    or a global average, when neither path saves enough (the window would cover more than half of the
    last activation and the changed regions more than half of the layers' values, or cost more than
    the whole model), or when its scores differ from the model's on probe edits (any failure to
    trace, freeze or run counts as a difference)."""
    try:
        with torch.no_grad():
            graph = _graph(model, base[:1])
            sizes = [shape[2:] for shape in graph.shapes]
            rows_axis = _axis(graph.steps, [s[0] for s in sizes], 0)
            cols_axis = _axis(graph.steps, [s[1] for s in sizes], 1)
            final = graph.shapes[-1]
            window = rows_axis.window * cols_axis.window
            keys, c = rows_axis.keys * cols_axis.keys, graph.shapes[0][1]
            linear = graph.boundary.linear
            outputs = linear.out_features if linear is not None else final[1]
            per_image = keys * (c * rows_axis.crop_size[0] * cols_axis.crop_size[0] + outputs)
            weights = keys * final[1] * window * outputs if linear is not None else 0
            small = 2 * window <= final[2] * final[3]  # else the crop network recomputes most of the model
            if max(len(base) * per_image, weights) > MAX_TABLE or not (small or _regions_save(graph)):
                return None
            local = LocalForward(graph, rows_axis, cols_axis, base)
            img, pos, vals = _probe(base)
            want = model(painted_copies(base, img, pos[:, None], vals[:, None, :]))
            crop_ok = small and _holds(lambda: local.crop.freeze(local.crop_inputs(img, pos, vals))
                                       and same_scores(local(img, pos, vals), want))
            regions = local.regions = _attempt(local.changed_regions)
            if regions is not None and not _holds(lambda: same_scores(local(img, pos, vals), want)):
                regions = None
            local.regions = regions if regions is not None and _regions_cheaper(local, regions, crop_ok) else None
            good = crop_ok or local.regions is not None
    except Exception:  # noqa: BLE001 - any failure to analyse, trace or run means: no local forward
        return None
    return local if good else None


def _holds(check: Callable[[], bool]) -> bool:
    """``check()``, ``False`` if it raises: a path that fails to build or run is not used."""
    return bool(_attempt(check))


def _attempt(build: Callable[[], _T]) -> _T | None:
    try:
        return build()
    except Exception:  # noqa: BLE001 - any failure to trace, freeze or run means: not this path
        return None


def _regions_cheaper(local: LocalForward, regions: _ChangedRegions, crop_ok: bool) -> bool:
    """Whether the changed regions cost less CPU time on a pass of :data:`REGION_ROWS` edits than the
    crop network (``crop_ok``) or else a frozen copy of the whole model on painted images, as modelled
    from the layers' shapes (:mod:`advrobust.runtime.path_cost`): never timed, so that the path, and
    with it the rounding of every score, is the same in every run."""
    graph = local.graph
    mine = path_cost.REGIONS.seconds(path_cost.regions_work(graph, regions.rows, regions.cols), REGION_ROWS)
    if crop_ok:
        return mine < path_cost.CROP.seconds(path_cost.crop_work(graph, local.rows_axis, local.cols_axis),
                                             REGION_ROWS)
    return mine < path_cost.WHOLE.seconds(path_cost.whole_work(graph), REGION_ROWS)


def changed_share(graph: _Graph, rows: _Changed, cols: _Changed) -> float:
    """The share of the values the local layers compute that lie in an edit's changed regions."""
    changed = sum(r * c * shape[1] for r, c, shape in zip(rows.size, cols.size, graph.shapes, strict=True))
    return changed / sum(math.prod(shape[1:]) for shape in graph.shapes)


def _regions_save(graph: _Graph) -> bool:
    """Whether a pixel's changed regions hold at most half of the values the local layers compute
    (else computing them saves too little to try)."""
    sizes = [shape[2:] for shape in graph.shapes]
    rows = _changed(graph.steps, [s[0] for s in sizes], 0)
    cols = _changed(graph.steps, [s[1] for s in sizes], 1)
    return changed_share(graph, rows, cols) <= 0.5
