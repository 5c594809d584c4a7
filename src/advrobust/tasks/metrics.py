"""Task metrics: mean IoU and pixel accuracy (segmentation), mAP at an IoU threshold (detection).

* Segmentation (Long et al. 2015, §5): from the confusion matrix ``C`` over labelled pixels, pixel
  accuracy ``Σ_i C_ii / Σ C`` and ``IoU_i = C_ii / (Σ_j C_ij + Σ_j C_ji − C_ii)``; mIoU averages
  ``IoU_i`` over the classes present in the labels or the predictions.
* Detection (Everingham et al. 2010, PASCAL VOC): per class, detections sorted by score are matched
  greedily to unmatched boxes of their class with IoU ≥ 0.5; AP is the area under the precision–recall
  curve with precision made monotone (all-point interpolation, VOC 2010+); mAP averages AP over the
  classes that have at least one box.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, y: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """``C[i, j]``: labelled pixels of class ``i`` predicted as ``j`` (``int64``, ``K×K``)."""
    counted = y != ignore_index
    index = y[counted].long() * num_classes + pred[counted].long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes).cpu()


def segmentation_metrics(confusion: Tensor) -> dict[str, float]:
    """``{"miou", "pixel_accuracy"}`` from a confusion matrix."""
    c = confusion.double()
    tp = c.diag()
    union = c.sum(dim=0) + c.sum(dim=1) - tp
    present = union > 0
    miou = float((tp[present] / union[present]).mean()) if bool(present.any()) else 0.0
    total = float(c.sum())
    return {"miou": miou, "pixel_accuracy": float(tp.sum()) / total if total else 0.0}


def per_image_confusion(pred: Tensor, y: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """``N×K×K``: the confusion matrix of each image (labelled pixels only)."""
    counted = y != ignore_index
    index = (y.long() * num_classes + pred.long()).masked_fill(~counted, 0).flatten(1)
    out = torch.zeros(y.shape[0], num_classes * num_classes, dtype=torch.long, device=y.device)
    out.scatter_add_(1, index, counted.flatten(1).long())
    return out.view(-1, num_classes, num_classes).cpu()


def miou_interval(confusions: Tensor, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the mIoU over images (Efron & Tibshirani 1993): images are
    drawn with replacement ``resamples`` times and the mIoU recomputed from their summed confusion."""
    n = confusions.shape[0]
    if n == 0:
        return (0.0, 0.0)
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=gen)
    weights = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(resamples, n, dtype=torch.float64))
    sums = weights @ confusions.flatten(1).double()
    k = confusions.shape[1]
    c = sums.view(resamples, k, k)
    tp = c.diagonal(dim1=1, dim2=2)
    union = c.sum(dim=1) + c.sum(dim=2) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp_min(1e-12), torch.zeros_like(tp))
    miou = iou.sum(dim=1) / present.sum(dim=1).clamp_min(1)
    lo, hi = torch.quantile(miou, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return (lo, hi)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box of ``a`` (``…×A×4``) with every box of ``b`` (``…×B×4``), boxes ``(x1, y1,
    x2, y2)``: ``…×A×B`` (leading dimensions, e.g. images, broadcast)."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(dim=-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp_min(0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp_min(0).prod(dim=-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp_min(1e-12)


class Scored(Protocol):
    boxes: Tensor
    scores: Tensor
    labels: Tensor


def average_precision(recall: Tensor, precision: Tensor) -> float:
    """Area under the precision–recall curve, precision made monotone (VOC all-point interpolation)."""
    r = torch.cat([torch.zeros(1, dtype=torch.float64), recall.double(), torch.ones(1, dtype=torch.float64)])
    p = torch.cat([torch.zeros(1, dtype=torch.float64), precision.double(), torch.zeros(1, dtype=torch.float64)])
    p = torch.flip(torch.cummax(torch.flip(p, [0]), 0).values, [0])
    steps = (r[1:] != r[:-1]).nonzero().squeeze(1)
    return float(((r[steps + 1] - r[steps]) * p[steps + 1]).sum())


def mean_average_precision(
    detections: Sequence[Scored], truths: Sequence[dict[str, Tensor]], iou_threshold: float = 0.5
) -> dict[str, float]:
    """``{"map", "recall"}`` over images: ``detections[i]`` (boxes, scores, labels) against ``truths[i]``
    (``{"boxes": M×4, "labels": M}``). ``recall``: the share of boxes detected at any score."""
    classes = sorted({int(c) for t in truths for c in t["labels"].tolist()})
    aps, found, total = [], 0, 0
    for cls in classes:
        entries: list[tuple[float, int, int]] = []  # (score, image, detection index)
        n_true = 0
        for i, (d, t) in enumerate(zip(detections, truths, strict=True)):
            n_true += int((t["labels"] == cls).sum())
            entries += [(float(s), i, j) for j, s in enumerate(d.scores.tolist()) if int(d.labels[j]) == cls]
        entries.sort(key=lambda e: -e[0])
        used = [torch.zeros(int((t["labels"] == cls).sum()), dtype=torch.bool) for t in truths]
        tp = torch.zeros(len(entries), dtype=torch.float64)
        for rank, (_, i, j) in enumerate(entries):
            gt = truths[i]["boxes"][truths[i]["labels"] == cls].float().cpu()
            if gt.shape[0] == 0:
                continue
            iou = box_iou(detections[i].boxes[j : j + 1].float().cpu(), gt)[0]
            iou[used[i]] = -1.0
            best = int(iou.argmax())
            if float(iou[best]) >= iou_threshold:
                used[i][best] = True
                tp[rank] = 1.0
        hits = torch.cumsum(tp, 0)
        recall = hits / max(n_true, 1)
        precision = hits / torch.arange(1, len(entries) + 1, dtype=torch.float64)
        aps.append(average_precision(recall, precision) if len(entries) else 0.0)
        found += int(tp.sum())
        total += n_true
    return {"map": sum(aps) / len(aps) if aps else 0.0, "recall": found / total if total else 0.0}
