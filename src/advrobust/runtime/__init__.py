"""How a model is run for an attack: the plain runner, the CPU fast path, frozen copies, the local
forward of one-pixel edits, and the policy that picks a runner (see ``docs/architecture.md``).

    policy = RuntimePolicy(fast=True)
    result = attack(model, x, y, runtime=policy)
"""

from __future__ import annotations

from advrobust.runtime.fast_forward import FastForward
from advrobust.runtime.frozen import FrozenCopies
from advrobust.runtime.policy import FAST_FORWARD_ENV, RuntimePolicy
from advrobust.runtime.runner import Runner

__all__ = ["FAST_FORWARD_ENV", "FastForward", "FrozenCopies", "Runner", "RuntimePolicy"]
