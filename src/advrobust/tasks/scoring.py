"""A dense task's metrics for a model's outputs, or for a model on images: mIoU and pixel accuracy
(segmentation), mAP@0.5 and recall (detection); see :mod:`advrobust.tasks.metrics` for the formulas."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.tasks.base import Task
from advrobust.tasks.detection import Detection, unpack_boxes
from advrobust.tasks.metrics import (
    confusion_matrix,
    mean_average_precision,
    miou_interval,
    per_image_confusion,
    segmentation_metrics,
)
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


class RunningMetrics:
    """A dense task's metrics over outputs seen batch by batch (:meth:`add`), so that many images
    (e.g. every draw of a physical evaluation) never sit in memory at once: a segmenter's confusion
    matrix is summed, a detector's detections are kept (mAP ranks them all together). With
    ``n_images``, a segmenter's confusions are kept per image instead (the ``index`` given to
    :meth:`add`, e.g. every draw of one scene counted to that scene), for :meth:`interval`."""

    def __init__(self, task: Task, n_images: int | None = None) -> None:
        if not isinstance(task, (Segmentation, Detection)):
            raise InputError(f"task metrics are defined for segmentation and detection, not {task.name}")
        self.task = task
        self.n_images = n_images
        self.confusion: Tensor | None = None
        self.per_image: Tensor | None = None
        self.detections: list = []
        self.truths: list[dict[str, Tensor]] = []

    def add(self, z: Tensor, y: Tensor, index: Tensor | None = None) -> RunningMetrics:
        """Count the outputs ``z`` against labels ``y`` (the task's tensor form); ``index``: which
        image each row is (needed when per-image confusions are kept)."""
        if isinstance(self.task, Segmentation):
            k, pred = z.shape[1], z.argmax(dim=1)
            if self.n_images is None:
                c = confusion_matrix(pred, y, k, self.task.ignore_index)
                self.confusion = c if self.confusion is None else self.confusion + c
            else:
                if index is None:
                    raise InputError("RunningMetrics with n_images needs the image index of every row")
                rows = per_image_confusion(pred, y, k, self.task.ignore_index)
                if self.per_image is None:
                    self.per_image = torch.zeros(self.n_images, k, k, dtype=rows.dtype)
                self.per_image.index_add_(0, index.cpu(), rows)
        else:
            self.detections += self.task.decode(z)
            self.truths += unpack_boxes(y)
        return self

    def result(self) -> dict[str, float]:
        if isinstance(self.task, Segmentation):
            confusion = self.confusion if self.per_image is None else self.per_image.sum(dim=0)
            if confusion is None:
                raise InputError("no outputs were counted")
            return segmentation_metrics(confusion)
        return mean_average_precision(self.detections, self.truths, self.task.iou_threshold)

    def interval(self) -> tuple[float, float] | None:
        """A 95% bootstrap interval of the mIoU over images (:func:`~advrobust.tasks.metrics.miou_interval`),
        if per-image confusions were kept; ``None`` otherwise (a detector's mAP: not resampled)."""
        return None if self.per_image is None else miou_interval(self.per_image)


def metrics_of_outputs(z: Tensor, y: Tensor, task: Task) -> dict[str, float]:
    """The task's metrics for outputs ``z`` against labels ``y`` (in the task's tensor form)."""
    return RunningMetrics(task).add(z, y).result()


def model_metrics(model: Any, x: Tensor, y: Any, task: Task) -> dict[str, float]:
    """The metrics of ``model`` on images ``x`` with labels ``y`` (any form the task accepts)."""
    return metrics_of_outputs(outputs(model, x), task.labels(y, x), task)
