"""The settings of one :func:`~advrobust.training.fit` run, as one typed value.

    config = FitConfig.from_recipe(recipe_for("pgd-at"), checkpoint_dir="runs/pgd")
    history = fit(model, train, val, config, method="pgd-at")
    history = fit(model, train, val, method="pgd-at", epochs=5)   # the same, keywords on the recipe
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

import torch

from advrobust.errors import InputError
from advrobust.progress import SILENT, Progress
from advrobust.training.collapse import CollapseRule
from advrobust.training.recipes import Optimization, Recipe

if TYPE_CHECKING:
    from advrobust.attacks.base import Attack
    from advrobust.training.engine import EarlyStopping

#: ``val_attack="auto"``: PGD with this many steps (random start, step ``2.5·ε/steps``)
AUTO_VAL_STEPS = 10


@dataclass(frozen=True)
class FitConfig(Optimization):
    """Everything ``fit`` is told besides the model, the data and the method.

    The outer optimization (:class:`~advrobust.training.recipes.Optimization`: ``epochs``,
    ``batch_size``, ``optimizer``, ``lr``, ``momentum``, ``weight_decay``, ``schedule``) and:

    ``seed``: data order, random starts, dropout. ``device``: cpu/cuda (default cuda if available).
    ``amp``: mixed precision (float16 + GradScaler on CUDA, bfloat16 on CPU).
    ``checkpoint_dir``: where the resumable state goes each epoch; with ``resume`` an existing state
    there (of the same configuration) is continued from its last complete epoch.
    ``val_attack``: an attack whose robust accuracy is measured each epoch on ``val_points`` fixed
    validation points; ``"auto"`` (default): PGD (10 steps, random start) at the method's ε for an
    adversarial method, none for standard training; ``None``: none.
    ``early_stopping``: keep the best epoch's weights, stop after ``patience`` epochs without progress.
    ``collapse``: the rule that ends a failed run (:class:`~advrobust.training.collapse.CollapseRule`);
    ``None`` turns the check off.
    ``progress``: per-batch progress callbacks. ``log_path``: the history as CSV or JSON lines.
    """

    seed: int = 0
    device: str | torch.device | None = None
    amp: bool = False
    checkpoint_dir: str | os.PathLike[str] | None = None
    resume: bool = True
    val_attack: Attack | Literal["auto"] | None = "auto"
    val_points: int = 200
    early_stopping: EarlyStopping | None = None
    collapse: CollapseRule | None = CollapseRule()
    progress: Progress = SILENT
    log_path: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.val_attack, str) and self.val_attack != "auto":
            raise InputError(f"val_attack must be an Attack, 'auto' or None; got {self.val_attack!r}")
        if self.val_points < 1:
            raise InputError(f"val_points must be at least 1, got {self.val_points}")

    @classmethod
    def from_recipe(cls, recipe: Recipe, **options: Any) -> FitConfig:
        """The recipe's outer optimization, with ``options`` (any field) on top."""
        return cls().replace(**{**recipe.optimization(), **options})

    def replace(self, **options: Any) -> FitConfig:
        """This configuration with some fields changed; an unknown name is an error that lists the known ones."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"fit takes no option {', '.join(unknown)}; its options are {', '.join(sorted(known))}")
        return dataclasses.replace(self, **options)
