"""Attacks: ``ar.attacks.PGD(ar.Linf(eps=0.3))``, or by name ``ar.attacks.create("pgd", eps=0.3)``.

Attack classes are imported on first use; ``list()`` and ``create()`` go through the registry.
"""

from __future__ import annotations

from advrobust.attacks.base import Attack, FixedBudgetAttack, MinimumNormAttack
from advrobust.attacks.context import RunContext
from advrobust.attacks.oracle import Oracle
from advrobust.attacks.registry import ATTACKS, create, get, list_attacks, spec
from advrobust.attacks.result import AttackResult, SweepResult
from advrobust.lazy import lazy_attributes

list = list_attacks  # noqa: A001 - the documented name, ar.attacks.list("*fgsm*")

_CLASSES = {s.cls: f"advrobust.attacks.{s.module}:{s.cls}" for s in ATTACKS.values()}

__all__ = [
    "Attack",
    "AttackResult",
    "FixedBudgetAttack",
    "MinimumNormAttack",
    "Oracle",
    "RunContext",
    "SweepResult",
    "create",
    "get",
    "list",
    "list_attacks",
    "spec",
    *sorted(_CLASSES),
]

__getattr__ = lazy_attributes(__name__, _CLASSES)
