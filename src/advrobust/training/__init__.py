"""Training: standard and adversarial, with default recipes, checkpoints, resume, schedules, AMP and DDP.

    from advrobust.training import fit, EarlyStopping
    history = fit(model, train, val, method="pgd-at", epochs=5, checkpoint_dir="runs/cnn")
    if history.failed: print(history.stop_reason)       # a collapsed run, with the likely fix

Each method trains by its default recipe (:mod:`advrobust.training.recipes`) unless told otherwise.

The default model (``mnist-cnn`` on ``mnist-5k``, trained once and cached) is
:func:`advrobust.training.pretrained.default_model`.
"""

from __future__ import annotations

from advrobust.training.collapse import CollapseRule
from advrobust.training.config import FitConfig
from advrobust.training.engine import Dataset, EarlyStopping, accuracy, fit
from advrobust.training.history import EpochRecord, TrainingHistory
from advrobust.training.methods import (
    METHODS,
    Collapsed,
    Standard,
    Stop,
    TrainingMethod,
    create_method,
    method_names,
)
from advrobust.training.recipes import RECIPES, Recipe, recipe_for
from advrobust.training.schedules import SCHEDULES

__all__ = [
    "METHODS",
    "RECIPES",
    "SCHEDULES",
    "CollapseRule",
    "Collapsed",
    "Dataset",
    "EarlyStopping",
    "EpochRecord",
    "FitConfig",
    "Recipe",
    "Standard",
    "Stop",
    "accuracy",
    "TrainingHistory",
    "TrainingMethod",
    "create_method",
    "fit",
    "method_names",
    "recipe_for",
]
