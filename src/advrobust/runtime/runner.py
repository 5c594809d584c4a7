"""How a model is run for an attack: the plain runner, and the interface every runner keeps.

An attack never calls the model itself: its :class:`~advrobust.attacks.oracle.Oracle` is handed a
runner and counts the queries, and the runner decides *how* each pass is computed. The plain runner
calls the model as it is; :class:`~advrobust.runtime.fast_forward.FastForward` computes the same
function faster on a CPU. A runner that changes the function itself — an average over the random
draws of a randomized model or of random input transformations (EOT, Athalye et al. 2018,
"Synthesizing robust adversarial examples", eq. 1) — implements :meth:`Runner.forward_and_grad` as
that average, and every attack gets it without a copy of its loop. Which runner an attack gets is
decided in one place, :class:`~advrobust.runtime.policy.RuntimePolicy`.

The contract, for every runner:

* :meth:`~Runner.forward` gives the model's scores (up to float rounding), with or without
  gradients as the caller's grad mode says;
* :meth:`~Runner.forward_and_grad` gives ``(scores, objective(scores), ∇_x objective)``, the gradient
  w.r.t. the input alone (``torch.autograd.grad``: no ``.grad`` is written into the model);
* :meth:`~Runner.exact` is the plain model: what every reported success is confirmed with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from advrobust.runtime.local_forward import LocalForward
    from advrobust.runtime.square_edits import SquareEdits

Model = Callable[[Tensor], Tensor]


class Runner:
    """The plain runner: ``model(x)`` as it is, one pass per call."""

    #: the layout the passes run in (``channels_last`` on the fast path)
    layout: str = "default"
    #: whether passes without gradients run on a frozen copy of the model
    frozen: bool = False
    #: model evaluations one pass costs (an EOT runner averages several), counted as queries
    passes: int = 1

    def __init__(self, model: Model) -> None:
        self.model = model

    def forward(self, x: Tensor) -> Any:
        """The model's output for ``x`` (the caller's grad mode decides whether it has a graph)."""
        return self.model(x)

    def __call__(self, x: Tensor) -> Any:
        return self.forward(x)

    def exact(self, x: Tensor) -> Any:
        """The plain model's output: what a reported success is confirmed with."""
        return self.model(x)

    def forward_and_grad(self, x: Tensor, objective: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(scores, objective(scores), ∇_x Σ objective)`` for a per-point ``objective`` of the scores."""
        with torch.enable_grad():
            x_var = x.detach().requires_grad_(True)
            z = self.forward(x_var)
            value = objective(z)
            (grad,) = torch.autograd.grad(value.sum(), x_var)
        return z.detach(), value.detach(), grad.detach()

    def one_pixel_edits(self, base: Tensor) -> LocalForward | None:
        """A forward pass for one-pixel edits of the images ``base`` computed on each pixel's receptive
        field (:mod:`advrobust.runtime.local_forward`), or ``None``: edits are then run as whole images."""
        return None

    def square_edits(self, base: Tensor) -> SquareEdits | None:
        """A forward pass for square edits of the images ``base`` computed on the changed regions only
        (:mod:`advrobust.runtime.square_edits`), or ``None``: edits are then run as whole images."""
        return None
