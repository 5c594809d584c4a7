"""Tasks: what a model returns and what "adversarial" means for it (classification, segmentation,
detection, verification). See :mod:`advrobust.tasks.base` for the interface.

    task = resolve_task("segmentation")          # by name
    task = resolve_task(None, model, y)          # the model's own ``task`` attribute, else from y's form

Inference from ``y`` (when neither the call nor the model names a task): a list of box dicts is
detection, a float ``N×D`` tensor verification, an integer ``N×H×W`` map segmentation, anything
else classification (whose checks then say what is wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from advrobust.errors import InputError
from advrobust.tasks.base import DenseView, Task
from advrobust.tasks.classification import Classification
from advrobust.tasks.detection import Detection, Detections
from advrobust.tasks.segmentation import Segmentation
from advrobust.tasks.verification import Verification

__all__ = [
    "CLASSIFICATION", "TASKS", "Classification", "DenseView", "Detection", "Detections", "Segmentation", "Task",
    "Verification", "resolve_task",
]

TASKS: dict[str, type[Task]] = {
    "classification": Classification,
    "segmentation": Segmentation,
    "detection": Detection,
    "verification": Verification,
}

CLASSIFICATION = Classification()


def _named(name: str) -> Task:
    key = name.strip().lower()
    if key not in TASKS:
        raise InputError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return CLASSIFICATION if key == "classification" else TASKS[key]()


def _inferred(y: Any) -> Task:
    if isinstance(y, Sequence) and not isinstance(y, (str, bytes)) and y and isinstance(y[0], dict):
        return Detection()
    if isinstance(y, Tensor):
        if y.dtype.is_floating_point and y.dim() == 2:
            return Verification()
        if not y.dtype.is_floating_point and y.dim() == 3:
            return Segmentation()
    return CLASSIFICATION


def resolve_task(task: str | Task | None, model: Any = None, y: Any = None) -> Task:
    """The task of a call: ``task`` if given (a name or a :class:`Task`), else the model's ``task``
    attribute (same forms), else inferred from the form of ``y`` (see the module docstring)."""
    if isinstance(task, Task):
        return task
    if task is not None:
        if not isinstance(task, str):
            raise InputError(f"task must be a name ({', '.join(TASKS)}) or a Task, got {type(task).__name__}")
        return _named(task)
    declared = getattr(model, "task", None)
    if isinstance(declared, Task):
        return declared
    if isinstance(declared, str) and declared.strip().lower() in TASKS:
        if declared.strip().lower() == "detection":
            return Detection(stride=int(getattr(model, "stride", 4)))
        return _named(declared)
    return _inferred(y)
