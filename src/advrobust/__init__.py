"""advrobust: the adversarial robustness of image classifiers, in PyTorch.

    import advrobust as ar
    attack = ar.attacks.PGD(ar.Linf(eps=0.3), steps=40)
    res = attack(model, x, y)            # res.x_adv, res.success, res.norm, res.queries

Heavy sub-packages are imported on first use, so ``import advrobust`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from advrobust.errors import AdvrobustError, InputError
from advrobust.threat import L0, L1, L2, Linf, Threat

__version__ = "0.1.0"

_SUBMODULES = {"attacks", "data", "models", "training", "evaluation", "report", "losses", "threat", "tasks"}
# public name -> "module:attribute", resolved lazily
_LAZY = {
    "evaluate": "advrobust.evaluation:evaluate",
    "audit": "advrobust.evaluation:audit",
}

__all__ = [
    "AdvrobustError",
    "InputError",
    "L0",
    "L1",
    "L2",
    "Linf",
    "Threat",
    *sorted(_SUBMODULES),
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"advrobust.{name}")
    if name in _LAZY:
        module, attribute = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'advrobust' has no attribute {name!r}")
