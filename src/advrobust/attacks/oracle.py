"""The model as an attack sees it: scores and input gradients, each call counted per point.

The :class:`Oracle` is handed a :class:`~advrobust.runtime.runner.Runner` (which decides *how* a
pass is computed: plain, the CPU fast path, an average over random draws) and keeps what the attack
contract needs of every pass: a query counted per row for the point it belongs to, scores of the
shape the model must return, gradients only where the model offers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from advrobust.attacks.access import Access, model_access
from advrobust.errors import ModelAccessError
from advrobust.losses import more_than_half
from advrobust.runtime.runner import Model, Runner
from advrobust.tasks import CLASSIFICATION, Task

#: fresh draws of a randomized model behind each verdict: a point counts as misclassified when the
#: model is wrong on more than half of them (odd, so there are no ties)
VERDICT_DRAWS = 11
#: two passes of a deterministic model agree to this tolerance, the fast path's float rounding
#: included (channels-last, a frozen copy: ~1e-6 on logits); a randomized defence moves far more
SAME_UP_TO_FAST_PATH = {"rtol": 1e-4, "atol": 1e-4}


class Oracle:
    """Logits and input gradients of ``runner``'s model for a batch of ``n`` points, counted per point.

    ``index`` names, for every row of a call, the point of the original batch it belongs to
    (repeats allowed: a population of candidates for one image counts once per candidate).
    ``task`` says what the model returns (every output is checked against it);
    ``extras`` collects the per-point diagnostics an attack reports in its result.
    """

    def __init__(self, runner: Runner, n: int, device: torch.device, task: Task = CLASSIFICATION) -> None:
        self.runner = runner
        self.task = task
        self.access: Access = model_access(runner.model)
        self.queries = torch.zeros(n, dtype=torch.long, device=device)
        #: whether the model's outputs changed between two plain passes (:meth:`notice_randomness`)
        self.randomized = False
        self.extras: dict[str, Tensor] = {}

    @property
    def model(self) -> Model:
        return self.runner.model

    def count(self, rows: int, index: Tensor | None) -> None:
        """Count the runner's passes per row (one, or an EOT runner's draws), for points ``index``
        (``None``: one row per point of the batch)."""
        passes = self.runner.passes
        if index is None:
            if rows != self.queries.shape[0]:
                raise ValueError("Oracle: pass `index` when querying a subset of the points")
            self.queries += passes
        else:
            self.queries.index_add_(0, index, torch.full_like(index, passes, dtype=torch.long))

    def confirm(self, x: Tensor) -> Tensor:
        """The plain model's scores for ``x`` (not counted, never the fast path): the confirmation
        pass that decides every reported success."""
        with torch.no_grad():
            return self._scores(self.runner.exact(x), x)

    def notice_randomness(self, x: Tensor, clean: Tensor) -> Tensor:
        """Run the plain model once more on ``x`` (not counted) and compare with the clean pass
        ``clean``: outputs that differ beyond the fast path's rounding make the model randomized, and
        every verdict of this call is then taken over :data:`VERDICT_DRAWS` draws. Returns the plain
        model's output, on which the clean verdicts are taken (a near tie may fall the other way on
        the fast path)."""
        again = self.confirm(x)
        self.randomized = not torch.allclose(again, clean.to(again.dtype), **SAME_UP_TO_FAST_PATH)
        return again

    def adversarial(self, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """The task's verdict per point on ``x`` (not counted, never the fast path), by the plain model —
        for a randomized model, true on more than half of :data:`VERDICT_DRAWS` fresh draws (Athalye,
        Carlini & Wagner 2018, §4.1.2: a single draw is luck)."""
        if not self.randomized:
            return self.task.is_adversarial(self.confirm(x), y, target)
        return more_than_half(
            torch.stack([self.task.is_adversarial(self.confirm(x), y, target) for _ in range(VERDICT_DRAWS)])
        )

    def _scores(self, out: Any, x: Tensor) -> Tensor:
        return self.task.check_output(out, x)

    @torch.no_grad()
    def logits(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """The model's output for ``x``: one query per row."""
        self.count(x.shape[0], index)
        return self._scores(self.runner.forward(x), x)

    def logits_and_grad(
        self,
        x: Tensor,
        objective: Callable[[Tensor], Tensor],
        index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits, objective(logits), ∇_x objective)`` with the objective per point; one query a row.

        The gradient is taken w.r.t. ``x`` alone (``torch.autograd.grad``): no ``.grad`` is written
        into the model's parameters.
        """
        if self.access != "gradients":
            raise ModelAccessError(
                f"this attack needs gradients, but the model offers only {self.access}: "
                "use a query attack (e.g. 'square', 'one-pixel') or pass a differentiable torch model"
            )
        self.count(x.shape[0], index)
        return self.runner.forward_and_grad(x, lambda out: objective(self._scores(out, x)))
