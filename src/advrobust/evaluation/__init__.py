"""Evaluation: robust accuracy over attack ensembles and eps sweeps, transfer, the gradient-masking
audit and the results store.

    rep = ar.evaluate(model, x, y, threat=ar.Linf(eps=0.3), suite="standard")
    rep.clean_accuracy, rep.robust_accuracy, rep.per_attack, rep.broken_by

Sub-modules are imported on first use (``audit`` and ``transfer`` pull in more attacks).
"""

from __future__ import annotations

from advrobust.evaluation.engine import evaluate
from advrobust.evaluation.result import AttackRecord, EvaluationResult, Example
from advrobust.evaluation.stats import wilson_interval
from advrobust.evaluation.suites import SUITES
from advrobust.lazy import lazy_attributes

_LAZY = {
    "ResultStore": "advrobust.evaluation.store:ResultStore",
    "audit": "advrobust.evaluation.masking:audit",
    "AuditResult": "advrobust.evaluation.masking:AuditResult",
    "Check": "advrobust.evaluation.masking:Check",
    "transfer_matrix": "advrobust.evaluation.transfer:transfer_matrix",
    "TransferResult": "advrobust.evaluation.transfer:TransferResult",
    # the minimum-norm side: robustness of every point at once
    "minimal_perturbations": "advrobust.evaluation.curves:minimal_perturbations",
    "robustness_curve": "advrobust.evaluation.curves:robustness_curve",
    "cross_check": "advrobust.evaluation.curves:cross_check",
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


__getattr__ = lazy_attributes(__name__, _LAZY)
