"""Attributes of a package imported on first use (a module ``__getattr__``, PEP 562), so that importing
a package costs only what it uses: the one mechanism behind ``ar.attacks.PGD``, ``ar.evaluate`` and
``ar.evaluation.audit``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, targets: Mapping[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that resolves ``name`` from ``targets[name]``: ``"module"``
    (the module itself) or ``"module:attribute"``."""

    def __getattr__(name: str) -> Any:
        target = targets.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = target.partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded

    return __getattr__
