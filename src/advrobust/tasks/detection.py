"""Object detection with a dense, anchor-free detector (in the spirit of CenterNet, Zhou et al. 2019).

**The output format** (:data:`FORMAT`): the model returns one tensor ``N×(K+4)×h×w`` on a grid of
stride ``s = H/h`` pixels. Channels ``0..K−1`` are class logits per cell, class 0 the background
(softmax); ``K, K+1`` the object centre's offset inside its cell (a logit: ``σ(o)`` cells);
``K+2, K+3`` the log of the box width and height in units of ``s``. A cell whose foreground score is a
3×3 local maximum above ``score_threshold`` is a detection (CenterNet's max-pool peak extraction):
its box is centred at ``(j + σ(o_x), i + σ(o_y))·s`` with size ``exp(·)·s``, its label the best
foreground class, its score that class's probability. One tensor keeps the detector differentiable
end to end, so every gradient attack works on it unchanged.

**Labels**: ``y`` is, per image, the boxes ``(x1, y1, x2, y2)`` in pixels and their class ids (``1..K−1``):
either a list of ``{"boxes": M×4, "labels": M}`` dicts (torchvision's form) or a tensor ``N×M×5`` of
rows ``(label, x1, y1, x2, y2)``, padded with label ``−1``. Each box owns the cells within one cell of
its centre (its *object cells*).

**Proposals** (Xie et al. 2017 attack a detector's proposals): the object cells of every box plus
every cell the model predicts as foreground, each with the true class of its box (a predicted
foreground cell outside every box keeps its predicted class, so a vanish target removes false
positives too).

**Criterion**: untargeted, an image is adversarial when none of its boxes is detected (IoU ≥
``iou_threshold`` with a detection of its class). Targeted, ``target`` holds one class id per image:
``0`` (background: "vanish") asks for no detection at all, a class ``c`` for every box detected as
``c``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advrobust.errors import InputError
from advrobust.losses import Objective, get_loss
from advrobust.tasks.base import DenseView, Motion, Params, Task, as_tensor, draw_mean, integer_tensor
from advrobust.tasks.classification import check_class_range
from advrobust.tasks.metrics import box_iou
from advrobust.tensors import class_scores_argmax

FORMAT = "center-grid"
BACKGROUND = 0
#: channels besides the class logits: centre offset (2) and log size (2)
BOX_CHANNELS = 4


@dataclass
class Detections:
    """The detections of one image: ``boxes`` ``M×4`` (x1, y1, x2, y2 pixels), ``scores`` ``M``, ``labels`` ``M``."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def pack_boxes(y: Any, n: int, device: torch.device) -> Tensor:
    """Boxes per image (a list of dicts or an ``N×M×5`` tensor) as one ``N×M×5`` float tensor,
    rows ``(label, x1, y1, x2, y2)`` padded with label ``−1``."""
    if isinstance(y, Sequence) and not isinstance(y, (str, bytes)):
        if len(y) != n:
            raise InputError(f"y must hold the boxes of each of the {n} images, got {len(y)} entries")
        rows = []
        for i, item in enumerate(y):
            if not isinstance(item, dict) or "boxes" not in item or "labels" not in item:
                raise InputError(f"y[{i}] must be a dict with 'boxes' (M×4) and 'labels' (M)")
            boxes = as_tensor(f"y[{i}]['boxes']", item["boxes"], device).float().reshape(-1, 4)
            labels = integer_tensor(f"y[{i}]['labels']", item["labels"], device).reshape(-1)
            if labels.shape[0] != boxes.shape[0]:
                raise InputError(f"y[{i}] has {boxes.shape[0]} boxes but {labels.shape[0]} labels")
            rows.append(torch.cat([labels[:, None].float(), boxes], dim=1))
        m = max((r.shape[0] for r in rows), default=0)
        packed = torch.full((n, m, 5), -1.0, device=device)
        for i, r in enumerate(rows):
            packed[i, : r.shape[0]] = r
        return packed
    t = as_tensor("y", y, device)
    if not t.dtype.is_floating_point or t.dim() != 3 or t.shape[0] != n or t.shape[2] != 5:
        raise InputError(
            f"y must be a list of {n} dicts with 'boxes' and 'labels', or a float tensor of shape ({n}, M, 5) of "
            f"rows (label, x1, y1, x2, y2); got {tuple(t.shape)} of dtype {t.dtype}"
        )
    return t


def _dropped(y: Tensor, drop: Tensor) -> Tensor:
    """The box rows ``y`` (``N×M×5``) with those where ``drop`` holds turned into padding."""
    return torch.where(drop[..., None], y.new_tensor([-1.0, 0.0, 0.0, 0.0, 0.0]), y)


def cell_box(head: Sequence[Tensor], i: Tensor, j: Tensor, stride: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The box ``(cx, cy, width, height)`` in pixels a cell ``(i, j)`` reads from its four box channels
    ``head`` (centre offset logits x, y; log width, height in strides; see the module docstring)."""
    offset_x, offset_y, log_w, log_h = head
    return ((j + offset_x.sigmoid()) * stride, (i + offset_y.sigmoid()) * stride,
            log_w.clamp(max=10).exp() * stride, log_h.clamp(max=10).exp() * stride)


def _object_scores(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Per cell, the most probable object class's probability and its index among the object
    classes (``0`` for class ``1``): what a detection's score and label are read from."""
    return logits.softmax(dim=1)[:, BACKGROUND + 1 :].max(dim=1)


def _local_maxima(score: Tensor) -> Tensor:
    """``N×h×w`` bool: the cells whose score is the largest of their 3×3 neighbourhood (the peaks a
    detection is decoded from). The 3×3 maximum is taken along rows, then along columns: four
    element-wise maxima, on a CPU 5× faster than ``max_pool2d(score, 3, 1, 1)`` (which computes the
    same values) for a detector's 16×16 grids, and asked at every step of an attack."""
    padded = F.pad(score, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return score == torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def unpack_boxes(packed: Tensor) -> list[dict[str, Tensor]]:
    """The inverse of :func:`pack_boxes`: one ``{"boxes", "labels"}`` dict per image."""
    out = []
    for rows in packed:
        real = rows[:, 0] >= 0
        out.append({"boxes": rows[real, 1:], "labels": rows[real, 0].long()})
    return out


class Detection(Task):
    """Detection with the :data:`FORMAT` output (see the module docstring)."""

    name = "detection"
    dense = True

    def __init__(self, stride: int = 4, score_threshold: float = 0.3, iou_threshold: float = 0.5) -> None:
        if int(stride) < 1:
            raise InputError(f"Detection: stride must be a positive integer, got {stride!r}")
        if not 0.0 < float(score_threshold) < 1.0 or not 0.0 < float(iou_threshold) <= 1.0:
            raise InputError("Detection: score_threshold must lie in (0, 1) and iou_threshold in (0, 1]")
        self.stride = int(stride)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)

    # --- inputs ----------------------------------------------------------------------------------
    def labels(self, y: Any, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise InputError(f"detection needs images of shape (N, C, H, W), got {tuple(x.shape)}")
        packed = pack_boxes(y, x.shape[0], x.device)
        h, w = x.shape[-2:]
        real = packed[..., 0] >= 0
        box = packed[..., 1:][real]
        if box.numel():
            if not bool(torch.isfinite(box).all()):
                raise InputError("y holds boxes with NaN or infinite coordinates")
            inside = (box[:, 0] >= 0) & (box[:, 1] >= 0) & (box[:, 2] <= w) & (box[:, 3] <= h)
            if not bool(inside.all()):
                bad = box[~inside][0].tolist()
                raise InputError(f"box {bad} lies outside the {w}×{h} image: boxes are (x1, y1, x2, y2) in pixels")
            if not bool(((box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])).all()):
                raise InputError("y holds an empty box: every box needs x2 > x1 and y2 > y1")
        if bool((packed[..., 0][real] < 1).any()):
            raise InputError("box labels must be foreground classes >= 1 (class 0 is the background)")
        return packed

    def targets(self, target: Any, y: Tensor, x: Tensor) -> Tensor:
        t = integer_tensor("target", target, x.device)
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise InputError(
                f"a detection target is one class id per image, shape ({x.shape[0]},) (0: make every object vanish);"
                f" got {tuple(t.shape)}"
            )
        if bool((t < 0).any()):
            raise InputError("target holds a negative class id")
        return t

    def check_output(self, out: Any, x: Tensor) -> Tensor:
        ok = isinstance(out, Tensor) and out.dim() == 4 and out.shape[0] == x.shape[0]
        s = self.stride
        ok = ok and out.shape[1] >= 2 + BOX_CHANNELS and tuple(out.shape[-2:]) == (x.shape[-2] // s, x.shape[-1] // s)
        if not ok:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise InputError(
                f"a detector must return its '{FORMAT}' grid of shape (N, classes+4, H/{s}, W/{s}) (stride {s}); for "
                f"an input of shape {tuple(x.shape)} it returned {shape}"
            )
        return out

    def check_classes(self, z: Tensor, y: Tensor, target: Tensor | None, gradients: bool = True) -> None:
        k = z.shape[1] - BOX_CHANNELS
        check_class_range(k, y=y[..., 0][y[..., 0] >= 0].long(), target=target)

    # --- the grid ----------------------------------------------------------------------------------
    def object_cells(self, y: Tensor, z: Tensor) -> Tensor:
        """``N×h×w`` class of the box owning each cell (the 3×3 cells around its centre), 0 elsewhere.
        Where two boxes' cells overlap, the later box wins. All boxes at once: each cell keeps the
        highest box number that claims it (a scatter-max), then reads that box's label."""
        n, _, h, w = z.shape
        m = y.shape[1]
        if m == 0:
            return torch.zeros(n, h, w, dtype=torch.long, device=z.device)
        corners = y[..., 1:].double()  # the same floor as Python's // on the coordinates
        ci = torch.div((corners[..., 1] + corners[..., 3]) / 2, self.stride, rounding_mode="floor").clamp(max=h - 1)
        cj = torch.div((corners[..., 0] + corners[..., 2]) / 2, self.stride, rounding_mode="floor").clamp(max=w - 1)
        step = torch.arange(-1, 2, device=z.device)
        rows = ci.long()[..., None, None] + step[:, None]  # N×M×3×1
        cols = cj.long()[..., None, None] + step[None, :]  # N×M×1×3
        claims = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w) & (y[..., 0] >= 0)[..., None, None]
        cell = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
        number = torch.arange(1, m + 1, device=z.device)[None, :, None, None] * claims  # 0: claims nothing
        owner = torch.zeros(n, h * w, dtype=torch.long, device=z.device).scatter_reduce(
            1, cell.reshape(n, -1), number.reshape(n, -1), "amax")
        labels = torch.cat([torch.zeros_like(y[:, :1, 0]), y[..., 0]], dim=1).long()  # box 0: no box
        return labels.gather(1, owner).reshape(n, h, w)

    def dense_logits(self, z: Tensor) -> Tensor:
        return z[:, : z.shape[1] - BOX_CHANNELS].reshape(z.shape[0], z.shape[1] - BOX_CHANNELS, -1)

    def dense_view(self, z: Tensor, y: Tensor) -> DenseView:
        n = z.shape[0]
        logits = self.dense_logits(z)
        owned = self.object_cells(y, z).reshape(n, -1)
        labels = torch.where(owned > 0, owned, class_scores_argmax(logits.detach()))
        return DenseView(logits, labels, labels != BACKGROUND)

    def still_correct(self, logits: Tensor, labels: Tensor) -> Tensor:
        """A proposal still shows its class while that class wins *or* keeps a probability of at
        least ``score_threshold`` (it would still be decoded as a detection)."""
        prob = logits.detach().float().softmax(dim=1).gather(1, labels[:, None]).squeeze(1)
        return (class_scores_argmax(logits.detach()) == labels) | (prob >= self.score_threshold)

    # --- decoding ----------------------------------------------------------------------------------
    def _peaks(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Every detection of the batch at once, in row-major cell order: its image, box (``M×4``),
        score and label (see the module docstring)."""
        k = z.shape[1] - BOX_CHANNELS
        s = self.stride
        score, cls = _object_scores(z[:, :k].detach().float())
        peak = _local_maxima(score) & (score >= self.score_threshold)
        image, ii, jj = peak.nonzero(as_tuple=True)
        head = z[image, k : k + BOX_CHANNELS, ii, jj].detach().float()  # M×4: offset x, y; log width, height
        cx, cy, width, height = cell_box(head.unbind(1), ii, jj, s)
        boxes = torch.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], dim=1)
        return image, boxes, score[image, ii, jj], cls[image, ii, jj] + 1

    def decode(self, z: Tensor) -> list[Detections]:
        """The detections of each image (see the module docstring)."""
        image, boxes, scores, labels = self._peaks(z)
        counts = torch.bincount(image, minlength=z.shape[0]).tolist()
        return [Detections(b, sc, lb) for b, sc, lb in zip(boxes.split(counts), scores.split(counts),
                                                            labels.split(counts), strict=True)]

    def found(self, detections: Detections, truth: Tensor, label: Tensor | None = None) -> Tensor:
        """Per box of ``truth`` (rows ``(label, x1, y1, x2, y2)``): is it detected, with its own label
        or with ``label`` if given?"""
        real = truth[:, 0] >= 0
        want = truth[real, 0].long() if label is None else label.expand(int(real.sum()))
        if len(detections) == 0 or want.numel() == 0:
            return torch.zeros(want.shape[0], dtype=torch.bool, device=truth.device)
        iou = box_iou(truth[real, 1:], detections.boxes)
        same = want[:, None] == detections.labels[None, :]
        return ((iou >= self.iou_threshold) & same).any(dim=1)

    def is_adversarial(self, z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """:meth:`found` for every box of every image at once: the detections padded to the most any
        image has (an attack asks this at every step)."""
        n = z.shape[0]
        image, boxes, _, labels = self._peaks(z)
        counts = torch.bincount(image, minlength=n)
        width = int(counts.max()) if image.numel() else 0
        slot = torch.arange(image.shape[0], device=z.device) - (counts.cumsum(0) - counts)[image]
        det_boxes = boxes.new_zeros(n, width, 4).index_put_((image, slot), boxes)
        det_labels = labels.new_full((n, width), -1).index_put_((image, slot), labels)
        truth_labels, real = y[..., 0].long(), y[..., 0] >= 0
        matched = (box_iou(y[..., 1:].float(), det_boxes) >= self.iou_threshold) & (det_labels[:, None, :] >= 0)
        if target is None:
            found = (matched & (truth_labels[:, :, None] == det_labels[:, None, :])).any(dim=2) & real
            return ~found.any(dim=1)
        as_target = (matched & (det_labels[:, None, :] == target[:, None, None])).any(dim=2)
        return torch.where(target == BACKGROUND, counts == 0, (as_target | ~real).all(dim=1))

    # --- labels in the picture -----------------------------------------------------------------
    def follow(self, y: Tensor, transform: Motion, params: Params, size: tuple[int, int]) -> Tensor:
        """Each box becomes the axis-aligned box around its four moved corners, clipped to the
        image; a box with less than half of it left inside the image is dropped (label ``−1``)."""
        n, m = y.shape[:2]
        if m == 0:
            return y
        h, w = size
        x1, y1, x2, y2 = y[..., 1:].unbind(-1)
        corners = torch.stack([x1, y1, x2, y1, x2, y2, x1, y2], dim=-1).reshape(n, 4 * m, 2)
        moved = transform.move_points(corners, params, size).reshape(n, m, 4, 2)
        low, high = moved.amin(dim=2), moved.amax(dim=2)
        limit = y.new_tensor([w, h])
        low_in = torch.minimum(low.clamp_min(0), limit)
        high_in = torch.minimum(high.clamp_min(0), limit)
        area = (high - low).prod(dim=-1)
        area_in = (high_in - low_in).clamp_min(0).prod(dim=-1)
        keep = (y[..., 0] >= 0) & (area_in >= 0.5 * area) & (area_in > 0)
        return _dropped(torch.cat([y[..., :1], low_in, high_in], dim=-1), ~keep)

    def pull_back(self, z: Tensor, transform: Motion, params: Params, size: tuple[int, int],
                  draws: int = 1) -> Tensor:
        """The grids of moved pictures over the unmoved one, averaged over the draws.

        Every detection of a moved picture is carried back whole, so that none is lost: each peak
        cell (a 3×3 local maximum, what :meth:`decode` reads) goes to the cell where its box's centre
        lands through the inverse motion, with its class scores, and its box's size becomes the
        extent of its four side midpoints carried back (a tilted object's box keeps about the
        object's size; for a shift or zoom, the exact inverse of :meth:`follow`). The other cells'
        class scores come from where each cell landed (bilinearly, as a segmenter's), so that the
        scores an attack differentiates cover the whole picture. Over the draws, class scores are
        averaged where the draws saw each cell, boxes weighed by their peak's score."""
        k = z.shape[1] - BOX_CHANNELS
        n, _, gh, gw = z.shape
        s = size[0] / gh
        ii = torch.arange(gh, dtype=z.dtype, device=z.device)[:, None].expand(gh, gw)
        jj = torch.arange(gw, dtype=z.dtype, device=z.device)[None, :].expand(gh, gw)
        cx, cy, width, height = cell_box(z[:, k:].unbind(1), ii, jj, s)
        half_w, half_h = width / 2, height / 2
        points = torch.stack([cx, cy, cx, cy - half_h, cx + half_w, cy, cx, cy + half_h, cx - half_w, cy], dim=-1)
        back = transform.move_points_back(points.reshape(n, -1, 2), params, size).reshape(n, gh, gw, 5, 2)
        score = _object_scores(z[:, :k].detach())[0]
        row, pi, pj = _local_maxima(score).nonzero(as_tuple=True)
        centre, sides = back[row, pi, pj, 0], back[row, pi, pj, 1:]
        ci, cj = (centre[:, 1] / s).floor().long(), (centre[:, 0] / s).floor().long()
        keep = (ci >= 0) & (ci < gh) & (cj >= 0) & (cj < gw)
        cell = (row * gh + ci.clamp(0, gh - 1)) * gw + cj.clamp(0, gw - 1)
        peak_score = score[row, pi, pj]
        best = score.new_full((n * gh * gw,), -1.0).scatter_reduce(0, cell[keep], peak_score[keep], "amax")
        keep &= peak_score == best[cell]  # two peaks landing in one cell: the stronger one
        at = (row[keep], ci[keep], cj[keep])

        def with_peaks(maps: Tensor, values: Tensor) -> Tensor:  # N×C×h×w maps with the carried peaks written in
            return maps.permute(0, 2, 3, 1).index_put(at, values).permute(0, 3, 1, 2)

        logits = with_peaks(transform.pull_back(z[:, :k], params), z[row[keep], :k, pi[keep], pj[keep]])
        seen = with_peaks(transform.pull_back(torch.ones_like(z[:, :1]), params), z.new_ones(int(keep.sum()), 1))
        extent = sides.amax(dim=1) - sides.amin(dim=1)
        boxes = with_peaks(z.new_zeros(n, 4, gh, gw), torch.cat([centre, extent], dim=1)[keep])
        weight = with_peaks(z.new_zeros(n, 1, gh, gw), peak_score[keep, None])
        scores, boxes = draw_mean(logits, seen, draws), draw_mean(boxes * weight, weight, draws)
        offset = (boxes[:, :2] / s - torch.stack([jj, ii])).clamp(1e-4, 1 - 1e-4).logit()
        log_size = (boxes[:, 2:] / s).clamp_min(1e-4).log()
        return torch.cat([scores, offset, log_size], dim=1)

    def occlude(self, y: Tensor, covered: Tensor) -> Tensor:
        """A box more than half hidden under a pasted texture is dropped (label ``−1``): what is left
        of the object is not there to detect, as with a box pushed out of the image."""
        n, m = y.shape[:2]
        if m == 0:
            return y
        h, w = covered.shape[-2:]
        edges = y[..., 1:].round()  # the box's pixels: columns x1 … x2 − 1, rows y1 … y2 − 1
        cols, rows = (torch.arange(w, device=y.device), torch.arange(h, device=y.device))
        in_cols = ((cols >= edges[..., 0:1]) & (cols < edges[..., 2:3])).float()  # N×m×W
        in_rows = ((rows >= edges[..., 1:2]) & (rows < edges[..., 3:4])).float()  # N×m×H
        # covered pixels per box, Σ_rows Σ_cols: two small products, exact in float32 below 2²⁴ pixels
        hidden = ((in_rows @ covered.float()) * in_cols).sum(dim=-1)
        area = in_rows.sum(dim=-1) * in_cols.sum(dim=-1)
        return _dropped(y, (y[..., 0] >= 0) & (hidden > 0.5 * area))

    def class_target(self, c: int, y: Tensor) -> Tensor:
        """One class per image (``0``: every object vanishes)."""
        return torch.full((y.shape[0],), int(c), dtype=torch.long, device=y.device)

    def objective(self, loss: str | Objective) -> Objective:
        per_cell = get_loss(loss)

        def mean_over_proposals(z: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
            view = self.dense_view(z, y)
            n, k, p = view.logits.shape
            rows = view.logits.permute(0, 2, 1).reshape(-1, k)
            tt = None if target is None else target[:, None].expand(n, p).reshape(-1)
            value = per_cell(rows, view.labels.reshape(-1), tt).view(n, p) * view.mask
            return value.sum(dim=1) / view.mask.sum(dim=1).clamp_min(1)

        return mean_over_proposals

    def __repr__(self) -> str:
        thresholds = f"score_threshold={self.score_threshold}, iou_threshold={self.iou_threshold}"
        return f"Detection(stride={self.stride}, {thresholds})"
