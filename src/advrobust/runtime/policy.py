"""The one place that decides how attacks run a model: :class:`RuntimePolicy`.

``evaluate``, the CLI and anyone running many attacks on one model pass a policy to each call
(``attack(model, x, y, runtime=policy)``); a call without one gets ``RuntimePolicy()``. The policy
picks the runner per model:

* :class:`~advrobust.runtime.fast_forward.FastForward` — channels-last weights, cache-sized batches
  and, for passes without gradients, a frozen copy of the model — for a torch ``nn.Module`` whose
  weights are all on the CPU, when ``fast`` is on;
* the plain :class:`~advrobust.runtime.runner.Runner` for everything else: black-box callables,
  models on an accelerator, ``fast=False``.

Both compute the model's function (the fast path is checked against the plain model on its first
call and falls back when it differs), and every reported success is confirmed on the plain model,
so the policy changes speed, never a result beyond float rounding of the scores an attack steers by.

The environment variable ``ADVROBUST_FAST_FORWARD=0`` (or ``false``, ``no``, ``off``) overrides
``fast`` to off for every policy: a switch for runs whose code cannot be changed to pass one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from torch import nn

from advrobust.runtime.fast_forward import FastForward, on_cpu
from advrobust.runtime.frozen import FrozenCopies
from advrobust.runtime.runner import Model, Runner

#: the environment variable that turns the fast path off for every policy
FAST_FORWARD_ENV = "ADVROBUST_FAST_FORWARD"


def fast_forward_allowed() -> bool:
    """Whether the environment allows the fast path (``ADVROBUST_FAST_FORWARD=0`` turns it off)."""
    return os.environ.get(FAST_FORWARD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class RuntimePolicy:
    """How attacks run a model.

    fast:
        Run CPU torch modules on the fast path (channels-last, cache-sized batches), default on.
    freeze:
        On the fast path, let passes without gradients run on a frozen copy of the model (query
        attacks) and one-pixel edits on the pixel's receptive field; default on. Off for a model
        whose ``forward`` has side effects that must run on every pass.

    The frozen copies built for the runs a policy serves are kept in it (one per model and state of
    its weights), so one policy passed to many calls builds each copy once.
    """

    fast: bool = True
    freeze: bool = True
    copies: FrozenCopies = field(default_factory=FrozenCopies, repr=False, compare=False)

    def runner(self, model: Model) -> Runner:
        """The runner for ``model``: the fast path where it applies, else the plain model."""
        if self.fast and fast_forward_allowed() and isinstance(model, nn.Module) and on_cpu(model):
            return FastForward(model, freeze=self.freeze, copies=self.copies)
        return Runner(model)
