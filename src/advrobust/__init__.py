"""advrobust: the adversarial robustness of image models (classifiers, segmenters, detectors, faces), in PyTorch.

    import advrobust as ar
    attack = ar.attacks.PGD(ar.Linf(eps=0.3), steps=40)
    res = attack(model, x, y)            # res.x_adv, res.success, res.norm, res.queries

Heavy sub-packages are imported on first use, so ``import advrobust`` stays fast.
"""

from __future__ import annotations

from advrobust.errors import AdvrobustError, InputError
from advrobust.lazy import lazy_attributes
from advrobust.threat import L0, L1, L2, Linf, Threat
from advrobust.version import __version__

_SUBMODULES = {"attacks", "data", "defences", "models", "training", "evaluation", "report", "losses", "threat",
               "runtime", "tasks", "transforms", "faces"}
# public name -> "module:attribute", resolved lazily
_LAZY = {
    "evaluate": "advrobust.evaluation:evaluate",
    "audit": "advrobust.evaluation:audit",
    "Masked": "advrobust.masked:Masked",
    "EOTDraws": "advrobust.runtime.eot:Draws",
}

__all__ = [
    "AdvrobustError",
    "InputError",
    "L0",
    "L1",
    "L2",
    "Linf",
    "Threat",
    "__version__",
    *sorted(_SUBMODULES),
    *sorted(_LAZY),
]

__getattr__ = lazy_attributes(__name__, {**{name: f"advrobust.{name}" for name in _SUBMODULES}, **_LAZY})
