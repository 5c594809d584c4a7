"""A model seen through a random transformation: how a transformation distribution meets EOT.

``TransformedModel(model, t)`` is the randomized model ``x ↦ f(t(x))`` with a fresh ``t ∼ T`` per
point at every call (drawn from its own seeded generator). Two ways to attack the expectation over
transformations of Athalye, Engstrom, Ilyas & Kwok (2018, eq. 1) through it:

    ar.attacks.PGD(ar.Linf(eps=0.2), steps=40, eot=ar.EOTDraws(8, "logits"))(TransformedModel(model, t), x, y)
    ar.attacks.PGD(ar.Linf(eps=0.2), steps=40)(TransformedModel(model, t, draws=8), x, y)

The first is every attack's ``eot`` setting (:mod:`advrobust.runtime.eot`: the objective, the logits
or the probabilities averaged over 8 passes, each a separate call); the second averages the logits of
8 draws in one batched pass of ``8·N`` rows (the form of Athalye et al.'s own EOT code for
classifiers), which the attack then sees as one deterministic-looking pass.

An output that lies over the picture is brought back over the input before the draws are averaged
(the model's task says how: :meth:`Task.pull_back <advrobust.tasks.Task.pull_back>`), so that it meets
the input's labels: a segmenter's per-pixel scores, a detector's class scores and boxes. They are
averaged where the draws saw each pixel or cell, and any attack on a segmenter or detector then
optimizes the expectation over poses as well.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advrobust.errors import InputError
from advrobust.runtime.chunks import CPU_ROWS, chunked
from advrobust.tasks import Segmentation, Task, resolve_task
from advrobust.transforms.base import Transform, check_images


class TransformedModel(nn.Module):
    """``forward(x) = (1/n) Σ_{k ≤ n} model(t_k(x))`` over ``draws = n`` fresh draws per point and
    call (``n = 1``: the randomized model ``model(t(x))``); ``seed`` seeds the draws (``reseed()``
    restarts them). ``task``: what the model does (a name or a :class:`~advrobust.tasks.Task`), by
    default the model's own ``task``, else a per-pixel output is a segmenter's."""

    def __init__(self, model: nn.Module, transform: Transform, draws: int = 1, seed: int = 0,
                 task: str | Task | None = None) -> None:
        super().__init__()
        for name in ("task", "stride"):  # what the attacks read to know the model's task
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        if task is not None:
            self.task = resolve_task(task)
        if isinstance(draws, bool) or int(draws) != draws or draws < 1:
            raise InputError(f"TransformedModel: draws must be an integer >= 1, got {draws!r}")
        self.draws = int(draws)
        if not isinstance(transform, Transform):
            raise InputError(f"TransformedModel takes an advrobust.transforms.Transform, got {transform!r}")
        self.model = model
        self.transform = transform
        self.seed = int(seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)

    def reseed(self) -> None:
        self.generator.manual_seed(self.seed)

    def _task(self) -> Task:
        """The task whose :meth:`~advrobust.tasks.Task.pull_back` brings a per-pixel or per-cell output
        back: the declared one, else a segmenter's."""
        return resolve_task(None, self) if getattr(self, "task", None) is not None else Segmentation()

    def forward(self, x: Tensor) -> Tensor:
        if self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device)
            self.generator.manual_seed(self.seed)
        check_images(type(self.transform).__name__, x)
        rows = x.repeat(self.draws, *([1] * (x.dim() - 1)))  # draw-major: draw k of point i at k·N + i
        params = self.transform.sample(rows, self.generator)
        # the draws·N rows in cache-sized passes (at least the caller's own batch): one pass of them all
        # spills a CPU's caches (a 4-draw pass of 40 detector scenes ran 1.3× slower in one piece)
        z = chunked(self.model, self.transform.apply(rows, params), max(x.shape[0], CPU_ROWS))
        if not (self.transform.moves_pixels() and isinstance(z, Tensor) and z.dim() == 4):
            return z.reshape(self.draws, x.shape[0], *z.shape[1:]).mean(dim=0)
        return self._task().pull_back(z, self.transform, params, tuple(x.shape[-2:]), self.draws)
