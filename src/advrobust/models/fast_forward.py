"""Run a torch model the way a CPU runs it fastest: channels-last convolutions, cache-sized batches.

Attacks spend nearly all their time in the model (DESIGN.md: the floor is the model's own passes),
so the layout of those passes is the largest speed lever left once an attack adds no overhead. Two
things matter on a CPU, both measured in ``benchmarks/bench_fast_forward.py``:

* **Channels-last weights.** PyTorch's default (NCHW) convolution on a CPU is several times slower
  for small images than the oneDNN channels-last kernels, which it picks when a convolution's weight
  is stored channels-last (``N×H×W×C`` strides; Intel's and PyTorch's "channels last" tutorial). On
  the MNIST CNNs here this makes a forward pass 2–4× faster and a forward+backward pass 1.3–2.1×.
  The user's module is never changed: its 4-D parameters are copied once per attack call into the
  channels-last layout and swapped in with :func:`torch.func.functional_call`.
* **Cache-sized batches.** A batch of a few hundred MNIST rows spills the activations out of the
  CPU's caches; 128 rows per pass ran fastest (:data:`CPU_ROWS`). Larger batches are split and the
  outputs concatenated. A classifier in eval mode treats rows independently (batch norm uses its
  running statistics), so each row's output is the same whatever batch it came in.

The fast path is only a faster way of computing the same function: on its first call it is checked
against the model's own forward pass on a few rows, and a model whose output differs (beyond float
rounding) or that fails on the layout — e.g. a ``forward`` that calls ``.view`` on a convolution's
output, which needs the default strides — falls back to the plain model for the whole call. Attacks
confirm every success with the plain model (:meth:`FastForward.exact`), so a reported success never
depends on the fast path. ``ADVROBUST_FAST_FORWARD=0`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

#: rows per forward pass on a CPU (cache-sized; see the module docstring)
CPU_ROWS = 128
#: rows compared between the fast path and the plain model on the first call
_CHECK_ROWS = 8


def enabled() -> bool:
    """Whether the fast path is on (``ADVROBUST_FAST_FORWARD=0`` turns it off)."""
    return os.environ.get("ADVROBUST_FAST_FORWARD", "1").strip().lower() not in ("0", "false", "no", "off")


def _on_cpu(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.device.type == "cpu" for t in tensors)


def _channels_last_weights(model: nn.Module) -> dict[str, Tensor]:
    """Channels-last copies of the model's 4-D parameters (convolution weights), by name.

    ``empty_like(..., memory_format=channels_last)`` gives the canonical channels-last strides even
    for a single input channel, where ``.contiguous(memory_format=...)`` keeps the default strides
    (both layouts are "contiguous" then) and the convolution would stay on the slow kernels.
    """
    return {
        name: torch.empty_like(p, memory_format=torch.channels_last).copy_(p.detach())
        for name, p in model.named_parameters()
        if p.dim() == 4
    }


class FastForward:
    """``model(x)``, computed in cache-sized chunks and channels-last layout on a CPU.

    Anything that is not a CPU ``nn.Module`` (a black-box callable, a model on an accelerator) is
    called as it is.
    """

    def __init__(self, model: Callable[[Tensor], Tensor]) -> None:
        self.model = model
        module = isinstance(model, nn.Module) and _on_cpu(model)
        self.rows: int | None = CPU_ROWS if module and enabled() else None
        weights = _channels_last_weights(model) if self.rows else {}
        self._weights: dict[str, Tensor] | None = weights or None
        self._checked = False

    @property
    def layout(self) -> str:
        """``channels_last`` while the fast path is in use, else ``default``."""
        return "channels_last" if self._weights is not None else "default"

    def __call__(self, x: Tensor) -> Tensor:
        if self._weights is not None and not self._checked:
            self._check(x)
        return self._chunked(self._pass, x)

    def exact(self, x: Tensor) -> Tensor:
        """The plain model's output (cache-sized chunks only): what a success is confirmed with."""
        return self._chunked(self.model, x)

    def _chunked(self, fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        if self.rows is None or x.shape[0] <= self.rows:
            return fn(x)
        return torch.cat([fn(part) for part in x.split(self.rows)])

    def _pass(self, x: Tensor) -> Tensor:
        if self._weights is None:
            return self.model(x)
        return functional_call(self.model, self._weights, (x,))

    def _check(self, x: Tensor) -> None:
        """Use the fast path only if it computes the model's function on the first rows of ``x``."""
        self._checked = True
        probe = x[:_CHECK_ROWS].detach()
        with torch.no_grad():
            plain = self.model(probe)
            try:
                fast = self._pass(probe)
            except RuntimeError:  # e.g. ``.view`` on a channels-last activation
                self._weights = None
                return
        if not isinstance(plain, Tensor) or not isinstance(fast, Tensor) or fast.shape != plain.shape:
            self._weights = None
            return
        scale = float(plain.abs().max()) if plain.numel() else 0.0
        if not bool(torch.allclose(fast, plain, rtol=1e-4, atol=1e-4 * max(scale, 1.0))):
            self._weights = None
