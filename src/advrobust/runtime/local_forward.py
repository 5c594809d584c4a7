"""Scores of one-pixel edits of known images, computed on the pixel's receptive field only.

One-Pixel scores hundreds of thousands of copies of a few images, each with one pixel replaced. In a
CNN that change reaches only a small window of every convolutional layer, so a full forward pass
mostly recomputes what the unedited image already gave. This is incremental inference, as in
Nakandala et al. 2019 ("Incremental and Approximate Inference for Faster Occlusion-based Deep CNN
Explanations", SIGMOD; their occlusion patch is our edited pixel), made exact for a model whose
convolutional part is a chain of spatially local layers followed by ``Flatten`` and ``Linear``:

1. once per image: the last local activation ``A`` of the unedited image and the dense layer's
   output ``Y0 = W·vec(A) + b``;
2. per edit at pixel ``(i, j)``: the window of ``A`` that holds every position the pixel can change
   (a fixed size for all pixels, placed by the pixel), recomputed from the crop of the edited image
   it depends on. Convolutions and pools run without padding on the crop; a crop's positions outside
   the layer's input are set to its padding value (0, or −∞ before a max-pool) first;
3. ``Y = Y0 + W_window · (A'_window − A_window)``: the dense layer is linear, so only its columns for
   the window count; the rest of the model (activations, further dense layers) runs on ``Y``.

On the default MNIST CNN the window is 3×3 of the 7×7 last activation and the crop 18×18 of the
28×28 image: about 5× fewer multiply-adds. Measured on 8192 edits (``benchmarks/bench_fast_forward.py``):
2.1× the rows per second of the frozen copy of the whole model on painted images, 7× the plain model;
3.2× and 9.5× on the width-32 PGD-AT CNN. The crop network runs as a frozen copy
(:func:`advrobust.runtime.frozen.frozen_trace`) in passes of as many crop pixels as ``CPU_ROWS``
whole images hold.

Supported layers (found by ``torch.fx`` tracing, the model's modes as they are): ``Conv2d`` (zero
padding), ``MaxPool2d``, ``AvgPool2d`` (no ``ceil_mode``), element-wise activations,
``BatchNorm2d`` and dropout in eval mode, and arithmetic with per-channel constants (a
normalization layer). Anything else — residual connections, global pooling, data-dependent control
flow, a window that saves little — gives no local forward, and the caller runs the whole model. A
local forward is built only if its scores match the model's on probe edits at the image's corners
and inside it (:func:`advrobust.runtime.frozen.same_scores`); the two round differently, so callers
confirm successes with the plain model. Like the frozen copy, it runs none of the module's Python
side effects (hooks).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.modules.utils import _pair

from advrobust.runtime.chunks import CPU_ROWS
from advrobust.runtime.frozen import CHECK_ROWS, frozen_trace, same_scores
from advrobust.tensors import painted_copies

#: the largest table kept (floats): the unedited images' crops and dense outputs (``images × windows ×
#: (crop pixels + outputs)``), and the dense weight's columns per window (``windows × window size × outputs``)
MAX_TABLE = 1 << 26

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


class _Unsupported(Exception):
    """The model is not a chain of local layers into Flatten and Linear."""


@dataclass(frozen=True)
class _Step:
    """One local layer: its node, its kind, and per axis (kernel extent, stride, padding)."""

    node: fx.Node
    kind: str  # "conv", "max_pool", "avg_pool" or "elementwise"
    axes: tuple[tuple[int, int, int], tuple[int, int, int]]
    fill: float  # the padding value: what the crop holds outside the layer's input

    @property
    def padded(self) -> bool:
        return any(p > 0 for _, _, p in self.axes)


@dataclass(frozen=True)
class _Axis:
    """One spatial axis of the chain: where an edit's window lies and what it is computed from.

    ``start[i]``: the final window's first position for an edit at coordinate ``i``; ``crop_start[s]``
    (one per window start) and ``crop_size[s]``: the input window of step ``s``; ``valid[s]``: which of
    its positions lie inside step ``s``'s input."""

    start: Tensor
    window: int
    keys: int
    crop_start: list[Tensor]
    crop_size: list[int]
    valid: list[Tensor]


def _axis(geometry: list[tuple[int, int, int]], sizes: list[int]) -> _Axis:
    """The windows along one axis, for steps of ``(kernel extent, stride, padding)`` and the sizes of
    their inputs and of the last output (``sizes``, one longer than ``geometry``)."""
    first, last = [], []
    for i in range(sizes[0]):
        a, b = i, i
        for (k, s, p), n_out in zip(geometry, sizes[1:], strict=True):
            a, b = max(0, -((k - 1 - p - a) // s)), min(n_out - 1, (b + p) // s)  # outputs reading [a, b]
            if a > b:
                raise _Unsupported("a pixel that changes no output (a stride skips it)")
        first.append(a)
        last.append(b)
    window = max(b - a + 1 for a, b in zip(first, last, strict=True))
    keys = sizes[-1] - window + 1
    starts, size = torch.arange(keys), window
    crop_start: list[Tensor] = []
    crop_size: list[int] = []
    for k, s, p in reversed(geometry):
        starts, size = starts * s - p, (size - 1) * s + k
        crop_start.insert(0, starts)
        crop_size.insert(0, size)
    valid = [(st[:, None] + torch.arange(n) >= 0) & (st[:, None] + torch.arange(n) < limit)
             for st, n, limit in zip(crop_start, crop_size, sizes, strict=False)]
    start = torch.tensor([min(a, keys - 1) for a in first])
    return _Axis(start, window, keys, crop_start, crop_size, valid)


def _total_stride(axis: _Axis) -> int:
    """How far apart consecutive window starts' input crops are (the chain's total stride)."""
    return int(axis.crop_start[0][1] - axis.crop_start[0][0]) if axis.keys > 1 else 1


def _attr(gm: fx.GraphModule, target: str) -> object:
    return functools.reduce(getattr, target.split("."), gm)


def _elementwise_args_ok(gm: fx.GraphModule, node: fx.Node, data: fx.Node) -> bool:
    """Whether every argument of ``node`` other than ``data`` is a constant the same at every pixel."""
    for arg in [*node.args, *node.kwargs.values()]:
        if arg is data:
            continue
        if isinstance(arg, fx.Node):
            value = _attr(gm, arg.target) if arg.op == "get_attr" else None
            if not isinstance(value, Tensor) or not (
                value.numel() == 1 or (value.dim() >= 3 and value.shape[-1] == value.shape[-2] == 1)
            ):
                return False
        elif not isinstance(arg, int | float | bool | str | type(None)):
            return False
    return sum(arg is data for arg in [*node.args, *node.kwargs.values()]) == 1


def _step(gm: fx.GraphModule, node: fx.Node, data: fx.Node) -> _Step | None:
    """``node`` as a local step reading ``data``, ``None`` if it is the Flatten boundary; raises
    :class:`_Unsupported` for anything else."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if node.args != (data,) or node.kwargs:
            raise _Unsupported(f"{node.target} is called with extra arguments")
        if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
            return None
        if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
            k, s, p, d = module.kernel_size, module.stride, module.padding, module.dilation
            return _Step(node, "conv", tuple((d[a] * (k[a] - 1) + 1, s[a], p[a]) for a in (0, 1)), 0.0)
        if isinstance(module, nn.MaxPool2d) and not module.ceil_mode and not module.return_indices:
            k, d, p = _pair(module.kernel_size), _pair(module.dilation), _pair(module.padding)
            s = _pair(module.stride or module.kernel_size)
            return _Step(node, "max_pool", tuple((d[a] * (k[a] - 1) + 1, s[a], p[a]) for a in (0, 1)), float("-inf"))
        if (isinstance(module, nn.AvgPool2d) and not module.ceil_mode
                and (module.count_include_pad or _pair(module.padding) == (0, 0))):
            k, p = _pair(module.kernel_size), _pair(module.padding)
            s = _pair(module.stride or module.kernel_size)
            return _Step(node, "avg_pool", tuple((k[a], s[a], p[a]) for a in (0, 1)), 0.0)
        batch_norm_ok = not isinstance(module, nn.BatchNorm2d) or module.running_mean is not None
        if isinstance(module, _ELEMENTWISE_MODULES) or (
            isinstance(module, _EVAL_ELEMENTWISE_MODULES) and not module.training and batch_norm_ok
        ):
            return _Step(node, "elementwise", ((1, 1, 0), (1, 1, 0)), 0.0)
        raise _Unsupported(f"{type(module).__name__} is not a local layer")
    flatten = (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    )
    if flatten and node.args[1:] in ((1,), (1, -1)) and not node.kwargs:
        return None
    elementwise = (node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS) or (
        node.op == "call_method" and node.target in _ELEMENTWISE_METHODS
    )
    if elementwise and _elementwise_args_ok(gm, node, data):
        return _Step(node, "elementwise", ((1, 1, 0), (1, 1, 0)), 0.0)
    raise _Unsupported(f"{node.op} {node.target} is not a local layer")


@dataclass(frozen=True)
class _Chain:
    """The model cut into its local steps, the Linear after the Flatten, and the graph after it."""

    gm: fx.GraphModule
    steps: list[_Step]
    linear: nn.Linear
    prefix: fx.GraphModule  # image -> last local activation
    tail: fx.GraphModule  # Linear's output -> the model's output
    shapes: list[tuple[int, ...]]  # the input's and every step's output shape (one row)


def _chain(model: nn.Module, example: Tensor) -> _Chain:
    gm = fx.symbolic_trace(model)
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise _Unsupported("the model takes more than one input")
    ShapeProp(gm).propagate(example)
    steps: list[_Step] = []
    data = inputs[0]
    while True:
        users = list(data.users)
        if len(users) != 1:
            raise _Unsupported(f"{data.name} feeds {len(users)} nodes: not a chain")
        step = _step(gm, users[0], data)
        if step is None:
            flatten = users[0]
            break
        if step.kind == "elementwise" and step.node.meta["tensor_meta"].shape != data.meta["tensor_meta"].shape:
            raise _Unsupported(f"{step.node.name} changes the shape")
        steps.append(step)
        data = step.node
    if not any(s.kind != "elementwise" for s in steps) or len(data.meta["tensor_meta"].shape) != 4:
        raise _Unsupported("no spatial layer before the Flatten")
    linear_node = next(iter(flatten.users)) if len(flatten.users) == 1 else None
    if linear_node is None or linear_node.op != "call_module":
        raise _Unsupported("the Flatten does not feed one Linear")
    linear = gm.get_submodule(str(linear_node.target))
    if not isinstance(linear, nn.Linear) or linear_node.args != (flatten,) or linear_node.kwargs:
        raise _Unsupported("the Flatten does not feed one Linear")
    shapes = [tuple(inputs[0].meta["tensor_meta"].shape)] + [tuple(s.node.meta["tensor_meta"].shape) for s in steps]
    return _Chain(gm, steps, linear, _subgraph(gm, inputs[0], data), _subgraph(gm, linear_node, None), shapes)


def _subgraph(gm: fx.GraphModule, start: fx.Node, end: fx.Node | None) -> fx.GraphModule:
    """The part of ``gm`` from ``start``'s value (the new input) to ``end`` (``None``: the output)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start: graph.placeholder("x")}

    def value(n: fx.Node) -> fx.Node:
        if n not in env:
            if n.op != "get_attr":
                raise _Unsupported(f"the model reads {n.name} after the dense layer")
            env[n] = graph.get_attr(str(n.target))
        return env[n]

    nodes = list(gm.graph.nodes)
    for node in nodes[nodes.index(start) + 1:]:
        if node.op == "output":
            graph.output(fx.map_arg(node.args[0], value))
            break
        if node.op != "get_attr":
            env[node] = graph.node_copy(node, value)
        if node is end:
            graph.output(env[node])
            break
    return fx.GraphModule(gm, graph)


def _crop_network(chain: _Chain) -> fx.GraphModule:
    """The local steps on a crop: ``(crop, mask per padded step) -> window of the last activation``;
    convolutions and pools without padding, each padded step's input set to its fill outside ``mask``
    (a product with a 0/1 mask for a zero fill, which keeps oneDNN's layout; a ``where`` for −∞)."""
    graph = fx.Graph()
    h = graph.placeholder("crop")
    masks = [graph.placeholder(f"inside_{i}") for i, s in enumerate(chain.steps) if s.padded]
    attrs: dict[str, fx.Node] = {}

    def attr(target: str) -> fx.Node:
        if target not in attrs:
            attrs[target] = graph.get_attr(target)
        return attrs[target]

    for step in chain.steps:
        if step.padded and step.fill == 0:
            h = graph.call_function(operator.mul, (h, masks.pop(0)))
        elif step.padded:
            h = graph.call_function(torch.where, (masks.pop(0), h, step.fill))
        node, module = step.node, None
        if node.op == "call_module":
            module = chain.gm.get_submodule(str(node.target))
        if step.kind == "conv":
            assert isinstance(module, nn.Conv2d)
            bias = attr(f"{node.target}.bias") if module.bias is not None else None
            h = graph.call_function(F.conv2d, (h, attr(f"{node.target}.weight"), bias, module.stride, 0,
                                               module.dilation, module.groups))
        elif step.kind == "max_pool":
            assert isinstance(module, nn.MaxPool2d)
            h = graph.call_function(F.max_pool2d, (h, module.kernel_size, module.stride or module.kernel_size, 0,
                                                   module.dilation))
        elif step.kind == "avg_pool":
            assert isinstance(module, nn.AvgPool2d)
            h = graph.call_function(F.avg_pool2d, (h, module.kernel_size, module.stride or module.kernel_size, 0,
                                                   False, True, module.divisor_override))
        else:
            previous = h
            h = graph.node_copy(node, lambda n, prev=previous: attr(str(n.target)) if n.op == "get_attr" else prev)
    graph.output(h)
    return fx.GraphModule(chain.gm, graph)


class LocalForward:
    """Logits of copies of ``base`` images with one pixel replaced (see the module docstring).

    Build with :func:`local_forward`; call with ``(img, pos, vals)``: for each row, the index of its
    base image, the flat index ``row·W + col`` of the pixel, and its new values (``C``)."""

    def __init__(self, chain: _Chain, rows_axis: _Axis, cols_axis: _Axis, base: Tensor) -> None:
        self.rows_axis, self.cols_axis, self.tail = rows_axis, cols_axis, chain.tail
        ra, ca = rows_axis, cols_axis
        n, c, h, w = base.shape
        self.width, self.keys = w, ra.keys * ca.keys
        self.crop = _CropNetwork(chain, ra, ca, CPU_ROWS * h * w)
        # per image and window: the crop of the unedited image ...
        top, left = -min(0, int(ra.crop_start[0].min())), -min(0, int(ca.crop_start[0].min()))
        bottom = max(0, int(ra.crop_start[0].max()) + ra.crop_size[0] - h)
        right = max(0, int(ca.crop_start[0].max()) + ca.crop_size[0] - w)
        padded = F.pad(base, (left, right, top, bottom))
        padded = padded[:, :, int(ra.crop_start[0][0]) + top:, int(ca.crop_start[0][0]) + left:]
        crops = padded.unfold(2, ra.crop_size[0], _total_stride(ra)).unfold(3, ca.crop_size[0], _total_stride(ca))
        crops = crops[:, :, : ra.keys, : ca.keys].permute(0, 2, 3, 1, 4, 5)
        self.crops = crops.reshape(n * self.keys, c, ra.crop_size[0], ca.crop_size[0]).contiguous()
        # ... and the dense layer's output without the window's part: Y0 − W_window · A_window
        activation = torch.cat([chain.prefix(part) for part in base.split(CPU_ROWS)])
        out, channels = chain.linear.out_features, activation.shape[1]
        weight = chain.linear.weight.detach().view(out, channels, *activation.shape[2:])
        weight = weight.unfold(2, ra.window, 1).unfold(3, ca.window, 1).permute(2, 3, 1, 4, 5, 0)
        self.weight = weight.reshape(self.keys, -1, out).contiguous()  # per window: its columns of W
        windows = activation.unfold(2, ra.window, 1).unfold(3, ca.window, 1).permute(0, 2, 3, 1, 4, 5)
        windows = windows.reshape(n, self.keys, -1)
        dense = chain.linear(activation.flatten(1))
        self.outside = (dense[:, None, :] - torch.einsum("bkf,kfo->bko", windows, self.weight)).flatten(0, 1)

    @torch.no_grad()
    def __call__(self, img: Tensor, pos: Tensor, vals: Tensor) -> Tensor:
        key, rows_of, crops = self._edited(img, pos, vals)
        window = self.crop(crops, key).flatten(1)
        dense = self.outside.index_select(0, rows_of)
        order = key.argsort()
        start = 0
        for group, count in enumerate(torch.bincount(key, minlength=self.keys).tolist()):
            if count:  # the rows whose window starts at this group's place share its weight columns
                rows = order[start:start + count]
                dense.index_add_(0, rows, window.index_select(0, rows) @ self.weight[group])
                start += count
        return self.tail(dense)

    def _edited(self, img: Tensor, pos: Tensor, vals: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each edit's window (``first row · column starts + first column`` in the last activation),
        its row of the per-image tables, and the edited image's crop that the window depends on
        (``R×C×crop rows×crop cols``)."""
        ra, ca = self.rows_axis, self.cols_axis
        ti, tj = ra.start.index_select(0, pos // self.width), ca.start.index_select(0, pos % self.width)
        key = ti * ca.keys + tj
        rows_of = img * self.keys + key
        crops = self.crops.index_select(0, rows_of)  # a copy: painted in place
        r, c = crops.shape[:2]
        i = pos // self.width - ra.crop_start[0].index_select(0, ti)
        j = pos % self.width - ca.crop_start[0].index_select(0, tj)
        at = (i * ca.crop_size[0] + j).view(r, 1, 1).expand(r, c, 1)
        crops.view(r, c, -1).scatter_(2, at, vals.reshape(r, c, 1).to(crops.dtype))
        return key, rows_of, crops

    def crop_inputs(self, img: Tensor, pos: Tensor, vals: Tensor) -> tuple[Tensor, ...]:
        """The crop network's inputs for these edits (what it is traced with)."""
        key, _, crops = self._edited(img, pos, vals)
        return self.crop.inputs(crops, key)


def _inside(rows: Tensor, cols: Tensor, kind: type) -> Tensor:
    """``(windows, 1, rows, cols)``: which positions of each window's crop lie inside the input."""
    inside = (rows[:, None, :, None] & cols[None, :, None, :]).flatten(0, 1)[:, None]
    return inside.float() if kind is float else inside


class _CropNetwork:
    """The local steps on crops (:func:`_crop_network`) with each window's masks, in passes of a
    fixed pixel budget; runs eagerly until :meth:`freeze`."""

    def __init__(self, chain: _Chain, rows_axis: _Axis, cols_axis: _Axis, pass_pixels: int) -> None:
        self.network = _crop_network(chain)
        self.forward: Callable[..., Tensor] = self.network
        self.masks = [
            _inside(rows_axis.valid[s], cols_axis.valid[s], float if step.fill == 0 else bool)
            for s, step in enumerate(chain.steps)
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
    or ``None`` when the model is not a chain of local layers into ``Flatten`` and ``Linear``, when
    the window would cover more than half of the last activation, or when its scores differ from the
    model's on probe edits (any failure to trace, freeze or run counts as a difference)."""
    try:
        with torch.no_grad():
            chain = _chain(model, base[:1])
            geometry = [s.axes for s in chain.steps]
            sizes = [shape[2:] for shape in chain.shapes]
            rows_axis = _axis([g[0] for g in geometry], [s[0] for s in sizes])
            cols_axis = _axis([g[1] for g in geometry], [s[1] for s in sizes])
            final = chain.shapes[-1]
            window = rows_axis.window * cols_axis.window
            keys, c = rows_axis.keys * cols_axis.keys, chain.shapes[0][1]
            per_image = keys * (c * rows_axis.crop_size[0] * cols_axis.crop_size[0] + chain.linear.out_features)
            tables = (len(base) * per_image, keys * final[1] * window * chain.linear.out_features)
            if 2 * window > final[2] * final[3] or max(tables) > MAX_TABLE:
                return None
            local = LocalForward(chain, rows_axis, cols_axis, base)
            img, pos, vals = _probe(base)
            if not local.crop.freeze(local.crop_inputs(img, pos, vals)):
                return None
            good = same_scores(local(img, pos, vals), model(painted_copies(base, img, pos[:, None], vals[:, None, :])))
    except Exception:  # noqa: BLE001 - any failure to analyse, trace or run means: no local forward
        return None
    return local if good else None
