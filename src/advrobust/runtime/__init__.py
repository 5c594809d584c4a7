"""How a model is run for an attack: the plain runner, the CPU fast path, frozen copies, the local
forward of one-pixel edits, and the policy that picks a runner (see ``docs/architecture.md``).

    policy = RuntimePolicy(fast=True)
    result = attack(model, x, y, runtime=policy)

The names below are imported on first use (:mod:`advrobust.lazy`), so that a light module of this
package (``huge_pages``, which the command line reads first thing) does not load the fast path.
"""

from __future__ import annotations

from advrobust.lazy import lazy_attributes

_EXPORTS = {
    "FAST_FORWARD_ENV": "advrobust.runtime.policy:FAST_FORWARD_ENV",
    "FastForward": "advrobust.runtime.fast_forward:FastForward",
    "FrozenCopies": "advrobust.runtime.frozen:FrozenCopies",
    "Runner": "advrobust.runtime.runner:Runner",
    "RuntimePolicy": "advrobust.runtime.policy:RuntimePolicy",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
