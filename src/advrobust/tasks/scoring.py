"""A dense task's metrics for a model's outputs, or for a model on images: mIoU and pixel accuracy
(segmentation), mAP@0.5 and recall (detection); see :mod:`advrobust.tasks.metrics` for the formulas."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.tasks.base import Task
from advrobust.tasks.detection import Detection, unpack_boxes
from advrobust.tasks.metrics import confusion_matrix, mean_average_precision, segmentation_metrics
from advrobust.tasks.segmentation import Segmentation

BATCH = 128


@torch.no_grad()
def outputs(model: Any, x: Tensor, batch: int = BATCH) -> Tensor:
    """The model's outputs for ``x``, computed in batches without gradients, the model in eval mode
    (its mode is restored afterwards)."""
    was = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        return torch.cat([model(x[i : i + batch]) for i in range(0, x.shape[0], batch)])
    finally:
        if was:
            model.train()


def metrics_of_outputs(z: Tensor, y: Tensor, task: Task) -> dict[str, float]:
    """The task's metrics for outputs ``z`` against labels ``y`` (in the task's tensor form)."""
    if isinstance(task, Segmentation):
        return segmentation_metrics(confusion_matrix(z.argmax(dim=1), y, z.shape[1], task.ignore_index))
    if isinstance(task, Detection):
        return mean_average_precision(task.decode(z), unpack_boxes(y), task.iou_threshold)
    raise InputError(f"task metrics are defined for segmentation and detection, not {task.name}")


def model_metrics(model: Any, x: Tensor, y: Any, task: Task) -> dict[str, float]:
    """The metrics of ``model`` on images ``x`` with labels ``y`` (any form the task accepts)."""
    return metrics_of_outputs(outputs(model, x), task.labels(y, x), task)
