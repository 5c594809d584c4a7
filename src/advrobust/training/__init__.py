"""Training: standard and adversarial, with checkpoints, resume, schedules, AMP and DDP.

    from advrobust.training import fit, EarlyStopping
    history = fit(model, train, val, method="standard", epochs=5, checkpoint_dir="runs/cnn")

The default model (``mnist-cnn`` on ``mnist-5k``, trained once and cached) is
:func:`advrobust.training.pretrained.default_model`.
"""

from __future__ import annotations

from advrobust.training.engine import Dataset, EarlyStopping, accuracy, fit
from advrobust.training.history import EpochRecord, TrainingHistory
from advrobust.training.methods import METHODS, Standard, Stop, TrainingMethod, create_method, method_names
from advrobust.training.schedules import SCHEDULES

__all__ = [
    "METHODS",
    "SCHEDULES",
    "Dataset",
    "EarlyStopping",
    "EpochRecord",
    "Standard",
    "Stop",
    "accuracy",
    "TrainingHistory",
    "TrainingMethod",
    "create_method",
    "fit",
    "method_names",
]
