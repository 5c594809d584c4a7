"""The metrics of a dense task on a batch or a data set: mIoU / pixel accuracy, mAP@0.5 / recall.

    clean_metrics(model, data)                    # on the clean images
    task_metrics(model, x_adv, y, task)           # on any images (e.g. an attack's x_adv)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.tasks import Detection, Segmentation, Task, resolve_task
from advrobust.tasks.detection import unpack_boxes
from advrobust.tasks.metrics import confusion_matrix, mean_average_precision, segmentation_metrics

BATCH = 128


@torch.no_grad()
def outputs(model: Any, x: Tensor, batch: int = BATCH) -> Tensor:
    """The model's outputs for ``x``, computed in batches without gradients, the model in eval mode."""
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


def task_metrics(model: Any, x: Tensor, y: Tensor, task: Task | str | None = None) -> dict[str, float]:
    """The metrics of ``model`` on images ``x`` with labels ``y`` (the task's tensor form)."""
    task = resolve_task(task, model, y)
    return metrics_of_outputs(outputs(model, x), task.labels(y, x), task)


def clean_metrics(model: Any, data: Any, task: Task | str | None = None) -> dict[str, float]:
    """The metrics of ``model`` on a scene data set (:class:`~advrobust.data.scenes.SceneDataset`)."""
    return task_metrics(model, data.x, data.y, task if task is not None else resolve_task(None, model, data.y))
