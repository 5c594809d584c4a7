"""A run directory: the per-point results of an evaluation, written as they are produced.

An evaluation is a fixed sequence of *units* (one attack × one eps × one chunk of points); which
points a unit attacks depends only on the units before it, and each unit is deterministic (the
attack's seed). So after an interruption (Ctrl-C, ``kill -9``), running the same evaluation with
the same run directory loads the finished units and computes only the rest, and the final numbers
are those of an uninterrupted run. Each unit is one file written atomically: a crash mid-write
leaves the previous state, never half a unit.

``manifest.json`` holds the evaluation's identity (model fingerprint, data hash, threat, eps,
attacks, seed, batch size); a directory holding another evaluation is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.paths import atomic_path


@dataclass(frozen=True)
class UnitResult:
    """What one unit (an attack at one eps on one chunk of points) found, on the CPU.

    ``index``: the points of the evaluation it attacked; ``success``: confirmed, and inside the ball
    for a fixed-budget attack; ``norm``: float32 ``‖r‖_p``, ``inf`` where no success; ``queries`` per
    point; ``keep``: positions (into ``index``) of the examples kept for the report, ``x_adv`` their
    adversarial inputs; ``seconds`` the unit took.
    """

    index: Tensor
    success: Tensor
    norm: Tensor
    queries: Tensor
    keep: Tensor
    x_adv: Tensor
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Tensors and a float: what ``torch.load(..., weights_only=True)`` reads back."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Any) -> UnitResult | None:
        """The unit stored as ``d``, or ``None`` if ``d`` is not one."""
        names = [f.name for f in fields(cls)]
        if not isinstance(d, dict) or sorted(d) != sorted(names):
            return None
        if not all(isinstance(d[n], Tensor) for n in names if n != "seconds"):
            return None
        return cls(**d)


class RunDirMismatch(InputError):
    """The run directory holds another evaluation."""


class RunDir:
    """Unit results on disk under ``root`` (``None``: keep nothing, resume nothing)."""

    def __init__(self, root: str | os.PathLike[str] | None, identity: dict[str, Any]) -> None:
        self.root = None if root is None else Path(root)
        if self.root is None:
            return
        manifest = self.root / "manifest.json"
        if manifest.exists():
            try:
                stored = json.loads(manifest.read_text())
            except json.JSONDecodeError:
                stored = None
            if stored != identity:
                raise RunDirMismatch(
                    f"the run directory {self.root} holds another evaluation (other model, data, "
                    "attacks or settings): pick a new --run-dir or delete that one"
                )
        else:
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps(identity, sort_keys=True))

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / "units" / f"{key}.pt"

    def load(self, key: str) -> UnitResult | None:
        """A finished unit, or ``None`` if it has not been computed (or cannot be read back)."""
        if self.root is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return UnitResult.from_dict(torch.load(path, weights_only=True))
        except Exception:  # noqa: BLE001 - an unreadable unit is recomputed, never trusted
            return None

    def save(self, key: str, unit: UnitResult) -> None:
        if self.root is None:
            return
        with atomic_path(self._path(key)) as tmp:
            torch.save(unit.to_dict(), tmp)
