"""Evaluation: robust accuracy over attack ensembles and eps sweeps, transfer, the gradient-masking
audit and the results store.

    rep = ar.evaluate(model, x, y, threat=ar.Linf(eps=0.3), suite="standard")
    rep.clean_accuracy, rep.robust_accuracy, rep.per_attack, rep.broken_by

Sub-modules are imported on first use (``audit`` and ``transfer`` pull in more attacks).
"""

from __future__ import annotations

import importlib
from typing import Any

from advrobust.evaluation.engine import evaluate
from advrobust.evaluation.result import AttackRecord, EvaluationResult, Example
from advrobust.evaluation.stats import wilson_interval
from advrobust.evaluation.suites import SUITES

_LAZY = {
    "ResultStore": "advrobust.evaluation.store",
    "audit": "advrobust.evaluation.masking",
    "AuditResult": "advrobust.evaluation.masking",
    "Check": "advrobust.evaluation.masking",
    "transfer_matrix": "advrobust.evaluation.transfer",
    "TransferResult": "advrobust.evaluation.transfer",
    # the minimum-norm side: robustness of every point at once
    "minimal_perturbations": "advrobust.evaluation.curves",
    "robustness_curve": "advrobust.evaluation.curves",
    "cross_check": "advrobust.evaluation.curves",
}

__all__ = [
    "SUITES",
    "AttackRecord",
    "EvaluationResult",
    "Example",
    "evaluate",
    "wilson_interval",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'advrobust.evaluation' has no attribute {name!r}")
