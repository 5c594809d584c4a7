"""A frozen, fused copy of a CPU model for the passes that need no gradient (query attacks).

One-Pixel, Square and the fooling images' evolution only read the model's scores, millions of rows
of them. For such passes a graph with the weights frozen in as constants runs much faster on a CPU
than the module itself: PyTorch's ``optimize_for_inference`` folds batch norm into the preceding
convolution, prepacks the weights once into oneDNN's blocked layout, keeps the activations in it
between layers and applies ReLU in place (PyTorch docs, ``torch.jit.optimize_for_inference``).
Measured in ``benchmarks/bench_fast_forward.py`` at 128 rows a pass: 1.6× (default MNIST CNN) and
1.35× (the width-32 PGD-AT CNN) more rows per second than the channels-last path of
:mod:`advrobust.runtime.fast_forward`, 3.9× and 3.8× the plain module; about 2× on the small ResNet,
whose batch norm is folded away.

The copy is built by tracing (``torch.jit.trace`` → ``freeze`` → ``optimize_for_inference``).
TorchScript is deprecated in favour of ``torch.compile``; its inductor backend with freezing reaches
a similar speed here but compiles for 4–6 s per model, longer than a typical One-Pixel run, while a
trace takes a few hundredths of a second. Where the TorchScript API is gone or fails,
:meth:`FrozenCopies.copy` returns no copy and the caller keeps its own path.

A trace records one path through ``forward``, so a copy is used only if it is the same function:

* tracing must raise no ``TracerWarning`` (data-dependent control flow, a tensor turned into a
  Python number) and no error;
* on rows of the first input, at a batch size other than the trace's, its scores must match the
  plain model's (:func:`same_scores`); a model in training mode fails this check (dropout is random,
  batch norm uses each batch's own statistics);
* the weights are frozen in: a copy is kept per model (in a :class:`FrozenCopies`, which the caller
  owns: the runtime policy keeps one for the runs it serves) with every module's mode and the
  identity and version counter of every parameter and buffer, so a change of mode or any in-place
  change of a weight (an optimizer step, ``load_state_dict``) makes it stale and a new one is built.

A frozen copy runs none of the module's Python side effects (hooks, counters); callers that confirm
results do so with the plain model. ``ADVROBUST_FAST_FORWARD=0`` turns it off with the rest of the
fast path (:class:`advrobust.runtime.RuntimePolicy`).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

#: rows of the first input compared between a frozen copy and the plain model
CHECK_ROWS = 8

Forward = Callable[[Tensor], Tensor]


class StateKey(NamedTuple):
    """What a frozen copy depends on (:func:`state_key`)."""

    row_shape: tuple[int, ...]
    dtype: torch.dtype
    modes: tuple[bool, ...]
    tensors: tuple[tuple[int, int], ...]  # (data_ptr, _version) of every parameter and buffer


@dataclass(frozen=True)
class Frozen:
    """The outcome of one build for one state of a model: ``forward`` is ``None`` when rejected."""

    key: StateKey
    forward: Forward | None

    def fits(self, x: Tensor) -> bool:
        """Whether ``x`` has the row shape and dtype this copy was built for."""
        return self.key.row_shape == tuple(x.shape[1:]) and self.key.dtype == x.dtype


def same_scores(fast: object, plain: object) -> bool:
    """Whether two outputs are the same scores up to float rounding (relative to their scale)."""
    if not isinstance(plain, Tensor) or not isinstance(fast, Tensor) or fast.shape != plain.shape:
        return False
    scale = float(plain.abs().max()) if plain.numel() else 0.0
    return bool(torch.allclose(fast, plain, rtol=1e-4, atol=1e-4 * max(scale, 1.0)))


def state_key(model: nn.Module, x: Tensor) -> StateKey:
    """What a frozen copy depends on: the input's row shape and dtype, every module's mode, and the
    identity and version of every parameter and buffer."""
    tensors = [*model.parameters(), *model.buffers()]
    return StateKey(
        tuple(x.shape[1:]),
        x.dtype,
        tuple(m.training for m in model.modules()),
        tuple((t.data_ptr(), t._version) for t in tensors),
    )


class FrozenCopies:
    """The frozen copies built so far, one per model (held weakly: a model that is dropped takes its
    copy along). Owned by whoever runs many attacks on one model, so a copy is built once per state
    of the model rather than once per attack call."""

    def __init__(self) -> None:
        self._built: weakref.WeakKeyDictionary[nn.Module, Frozen] = weakref.WeakKeyDictionary()

    def cached(self, model: nn.Module, x: Tensor) -> Frozen | None:
        """The copy built for the model's current state and this input's row shape, if any."""
        entry = self._built.get(model)
        return entry if entry is not None and entry.key == state_key(model, x) else None

    def copy(self, model: nn.Module, x: Tensor) -> Frozen:
        """The cached copy, or a new one: trace, freeze and optimize ``model`` on rows of ``x``; keep
        the copy if it is the same function."""
        entry = self.cached(model, x)
        if entry is None:
            probe = x[:CHECK_ROWS].detach()
            entry = Frozen(state_key(model, x), frozen_trace(model, (probe,)) if len(probe) else None)
            self._built[model] = entry
        return entry


def frozen_trace(model: nn.Module, probe: tuple[Tensor, ...]) -> Callable[..., Tensor] | None:
    """``model`` traced, frozen and optimized for inputs like ``probe`` (one tensor per argument, rows
    first), or ``None`` unless that is the same function (see the module docstring)."""
    example = tuple(torch.cat([p, p]) for p in probe)  # traced at 2p rows, checked at p: no batch size baked in
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            traced = torch.jit.trace(model, example, check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            fast, plain = frozen(*probe), model(*probe)
            unsound = any(issubclass(w.category, torch.jit.TracerWarning) for w in caught)
        except Exception:  # noqa: BLE001 - any failure to trace or run means: no frozen copy
            return None
    if unsound:
        return None
    return frozen if same_scores(fast, plain) else None
