"""Defences with certificates, and the interval ``[certified, attacked]`` of robust accuracy.

    from advrobust.defences import GaussianSmoothing, certify_and_attack
    smoothed = GaussianSmoothing(model, sigma=0.25)
    cert = smoothed.certify(x, n0=100, n=1000, alpha=0.001)   # Cohen et al. 2019
    interval = certify_and_attack(smoothed, x, y, epsilons=[0.5, 1.0])

* :mod:`~advrobust.defences.smoothing`: randomized smoothing (Cohen, Rosenfeld & Kolter 2019),
  certified l2 radii.
* :mod:`~advrobust.defences.ablation`: derandomized column smoothing (Levine & Feizi 2020),
  certified against patches.
* :mod:`~advrobust.defences.interval`: certified (lower) and attacked (upper) robust accuracy on
  the same points, l2 (Gaussian smoothing).
* :mod:`~advrobust.defences.patch_interval`: the same against m×m patches (column smoothing).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ABSTAIN": "advrobust.defences.smoothing",
    "Certificate": "advrobust.defences.smoothing",
    "GaussianSmoothing": "advrobust.defences.smoothing",
    "SoftSmoothed": "advrobust.defences.smoothing",
    "certified_accuracy": "advrobust.defences.smoothing",
    "IntervalResult": "advrobust.defences.interval",
    "certify_and_attack": "advrobust.defences.interval",
    "ColumnSmoothing": "advrobust.defences.ablation",
    "PatchCertificate": "advrobust.defences.ablation",
    "ablate": "advrobust.defences.ablation",
    "PatchIntervalResult": "advrobust.defences.patch_interval",
    "certify_and_attack_patches": "advrobust.defences.patch_interval",
    "clopper_pearson_lower": "advrobust.defences.bounds",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'advrobust.defences' has no attribute {name!r}")
