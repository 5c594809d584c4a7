"""Attacks: ``ar.attacks.PGD(ar.Linf(eps=0.3))``, or by name ``ar.attacks.create("pgd", eps=0.3)``.

Attack classes are imported on first use; ``list()`` and ``create()`` go through the registry.
"""

from __future__ import annotations

from typing import Any

from advrobust.attacks.base import (
    Attack,
    AttackResult,
    FixedBudgetAttack,
    MinimumNormAttack,
    Oracle,
    SweepResult,
)
from advrobust.attacks.registry import ATTACKS, create, get, list_attacks, spec

list = list_attacks  # noqa: A001 - the documented name, ar.attacks.list("*fgsm*")

_CLASSES = {s.cls: s for s in ATTACKS.values()}

__all__ = [
    "Attack",
    "AttackResult",
    "FixedBudgetAttack",
    "MinimumNormAttack",
    "Oracle",
    "SweepResult",
    "create",
    "get",
    "list",
    "list_attacks",
    "spec",
    *sorted(_CLASSES),
]


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return _CLASSES[name].load()
    raise AttributeError(f"module 'advrobust.attacks' has no attribute {name!r}")
