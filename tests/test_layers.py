"""The layers of docs/architecture.md depend in one direction: a module imports only from its own layer's
package or from layers below it. Imports are read with ``ast`` (nothing is imported), so an import in
the wrong direction fails here whatever the import order or laziness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "advrobust"

#: each top-level module or package of advrobust, by layer (lowest first), as in docs/architecture.md
LAYERS: list[set[str]] = [
    {"errors", "tensors", "paths", "progress", "version", "lazy", "distributed"},
    {"threat", "losses", "data", "models", "masks", "printability"},
    {"masked"},  # a threat model on a support: threat and masks
    {"runtime"},
    {"tasks"},
    {"transforms"},  # a transformed model brings outputs back through its task
    {"attacks"},
    {"defences", "faces"},  # certified defences and the face pipeline: built on attacks
    {"evaluation", "training"},
    {"report"},
    {"__init__"},  # the public facade: ``import advrobust as ar``
    {"cli"},
    {"__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _unit(path: Path) -> str:
    """The top-level module or package a file of advrobust belongs to."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def _imports(path: Path, source: str) -> list[tuple[int, str]]:
    """``(line, unit)`` for every import of another part of advrobust in ``source`` (lazy ones included)."""
    out = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            out.append((node.lineno, "a relative import"))
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name == "advrobust":
                out.append((node.lineno, "__init__"))
            elif name.startswith("advrobust."):
                out.append((node.lineno, name.split(".")[1]))
    return out


def _violations(path: Path, source: str) -> list[str]:
    """The imports of ``source`` (the file ``path``) that point up the layers or sideways into a sibling."""
    unit = _unit(path)
    return [
        f"{path.relative_to(PACKAGE)}:{line} imports {target} (layer {RANK.get(target, '?')}) from layer {RANK[unit]}"
        for line, target in _imports(path, source)
        if target != unit and RANK.get(target, len(LAYERS)) >= RANK[unit]
    ]


def test_every_part_of_the_package_has_a_layer():
    units = {_unit(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"add {sorted(units - set(RANK))} to LAYERS and to docs/architecture.md"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path):
    wrong = _violations(path, path.read_text())
    assert not wrong, "; ".join(wrong)


def test_the_check_reports_upward_sideways_and_relative_imports():
    attack = PACKAGE / "attacks" / "probe.py"
    assert _violations(attack, "from advrobust.evaluation import evaluate\n")  # up
    assert _violations(attack, "def f():\n    import advrobust.report\n")  # up, lazily
    assert _violations(PACKAGE / "training" / "probe.py", "from advrobust.evaluation import engine\n")  # sideways
    assert _violations(attack, "from .base import Attack\n")  # relative: cannot be checked
    assert not _violations(attack, "from advrobust.runtime import RuntimePolicy\nfrom advrobust.attacks import base\n")
