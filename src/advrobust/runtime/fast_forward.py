"""Run a torch model the way a CPU runs it fastest: channels-last convolutions, cache-sized batches.

Attacks spend nearly all their time in the model (the floor of their cost is the model's own passes),
so the layout of those passes is the largest speed lever left once an attack adds no overhead. Three
things matter on a CPU, all measured in ``benchmarks/bench_fast_forward.py``:

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
* **A frozen copy for passes without gradients.** Query attacks only read scores; for those passes
  a traced, frozen and oneDNN-fused copy of the model (:mod:`advrobust.runtime.frozen`) runs another
  1.35–2× faster. A :class:`FastForward` switches to it once it has run :data:`FROZEN_AFTER_ROWS`
  rows without gradients (so a short call never pays for the build; the copy is then kept for the
  model's current weights), and the copy is checked against the plain model like the rest.

The fast path is only a faster way of computing the same function: on its first call it is checked
against the model's own forward pass on a few rows (a randomized model's two passes on the same
draws), and a model whose output differs (beyond float rounding) or that fails on the layout — e.g.
a ``forward`` that calls ``.view`` on a convolution's output, which needs the default strides —
falls back to the plain model for the whole call. Attacks confirm every success with the plain
model (:meth:`FastForward.exact`), so a reported success never depends on the fast path. Whether a
model runs on it is decided by :class:`advrobust.runtime.policy.RuntimePolicy`
(``ADVROBUST_FAST_FORWARD=0`` turns it off).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from advrobust.runtime.chunks import CPU_ROWS, chunked
from advrobust.runtime.frozen import CHECK_ROWS, Frozen, FrozenCopies, same_scores
from advrobust.runtime.local_forward import LocalForward, local_forward
from advrobust.runtime.randomness import replay_point
from advrobust.runtime.runner import Runner
from advrobust.runtime.square_edits import SquareEdits, square_edits

#: rows run without gradients before switching to a frozen copy: about what building one (trace, check:
#: a few hundredths of a second on the MNIST models) saves on the rows after it
FROZEN_AFTER_ROWS = 8192


def on_cpu(model: nn.Module) -> bool:
    """Whether every parameter and buffer of ``model`` is on the CPU (and it has some)."""
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


class FastForward(Runner):
    """``model(x)`` for a CPU ``nn.Module``, computed in cache-sized chunks and channels-last layout.

    ``freeze=False`` keeps passes without gradients on the module itself (for a model whose
    ``forward`` has side effects that must run, or to time the channels-last path alone). ``copies``
    holds the frozen copies built so far (shared by the runners of one policy; default: this
    runner's own).
    """

    rows = CPU_ROWS

    def __init__(self, model: nn.Module, freeze: bool = True, copies: FrozenCopies | None = None) -> None:
        super().__init__(model)
        self.freeze = freeze
        self.copies = copies if copies is not None else FrozenCopies()
        weights = _channels_last_weights(model)
        self._weights: dict[str, Tensor] | None = weights or None
        self._checked = False
        self._frozen: Frozen | None = None
        self._rows_without_grad = 0

    @property
    def layout(self) -> str:  # type: ignore[override]
        """``channels_last`` while the fast path is in use, else ``default``."""
        return "channels_last" if self._weights is not None else "default"

    @property
    def frozen(self) -> bool:  # type: ignore[override]
        """Whether passes without gradients run on a frozen copy of the model."""
        return self._frozen is not None and self._frozen.forward is not None

    def forward(self, x: Tensor) -> Tensor:
        if self.freeze and not torch.is_grad_enabled():
            inference = self._frozen_forward(x)
            if inference is not None:
                return chunked(inference, x, self.rows)
        if self._weights is not None and not self._checked:
            self._check(x)
        return chunked(self._pass, x, self.rows)

    def exact(self, x: Tensor) -> Tensor:
        """The plain model's output (cache-sized chunks only): what a success is confirmed with."""
        return chunked(self.model, x, self.rows)

    def one_pixel_edits(self, base: Tensor) -> LocalForward | None:
        """The receptive-field forward of one-pixel edits of ``base``, where passes may run on copies of
        the model (``freeze``) and the model is a chain it computes exactly."""
        return local_forward(self.model, base) if self.freeze else None

    def square_edits(self, base: Tensor) -> SquareEdits | None:
        """The changed-region forward of square edits of ``base``, where passes may run on copies of
        the model (``freeze``) and it computes the model exactly."""
        return square_edits(self.model, base) if self.freeze else None

    def _pass(self, x: Tensor) -> Tensor:
        if self._weights is None:
            return self.model(x)
        return functional_call(self.model, self._weights, (x,))

    def _frozen_forward(self, x: Tensor) -> Callable[[Tensor], Tensor] | None:
        """The frozen copy for this call's passes without gradients, from the call in which this
        instance reaches :data:`FROZEN_AFTER_ROWS` rows without gradients on. The switch point
        depends only on the calls, never on what ran before in the process (a copy cached by an
        earlier attack saves the build, not the rows before the switch): the two paths round
        differently, so an attack run twice with one seed gives the same result."""
        if self._frozen is None or not self._frozen.fits(x):
            self._rows_without_grad += x.shape[0]
            if self._rows_without_grad < FROZEN_AFTER_ROWS:
                return None
            self._frozen = self.copies.copy(self.model, x)
        return self._frozen.forward

    def _check(self, x: Tensor) -> None:
        """Use the fast path only if it computes the model's function on the first rows of ``x``."""
        self._checked = True
        probe = x[:CHECK_ROWS].detach()
        replay = replay_point(self.model)  # a randomized model: both passes on the same draws
        with torch.no_grad():
            plain = self.model(probe)
            replay()
            try:
                fast = self._pass(probe)
            except RuntimeError:  # e.g. ``.view`` on a channels-last activation
                self._weights = None
                return
        if not same_scores(fast, plain):
            self._weights = None
