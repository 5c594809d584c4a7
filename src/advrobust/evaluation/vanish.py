"""The physical vanishing rate of a face from a detector, under fresh transformations.

The measurement behind :mod:`advrobust.faces.physical`'s vanishing attack: a transformation moves
the picture, so the face's box moves with it (:func:`advrobust.faces.physical.moved_boxes`), and a
draw counts as vanished only when the full detection (score threshold and non-maximum suppression)
returns no box at IoU ≥ 0.5 with the face where it now is. The result is the
:class:`~advrobust.evaluation.physical.PhysicalSuccess` of every other physical attack.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advrobust.errors import InputError
from advrobust.evaluation.physical import PhysicalSuccess
from advrobust.faces.adapters import VANISH_IOU
from advrobust.faces.detection import DEFAULT_SCORE_THRESHOLD, TinyFaceDetector, box_iou
from advrobust.faces.images import Box
from advrobust.faces.physical import moved_boxes
from advrobust.transforms import Transform, physical


def _found(detections, box: Tensor) -> bool:
    """Whether a detection overlaps ``box`` (x, y, width, height) at IoU ≥ 0.5."""
    if not detections:
        return False
    boxes = torch.tensor([d.box for d in detections], dtype=torch.float64)
    return bool((box_iou(boxes, box) >= VANISH_IOU).any())


@torch.no_grad()
def vanish_success(detector: TinyFaceDetector, image: Tensor, image_adv: Tensor, box: Box, *,
                   transform: Transform | None = None, n_draws: int = 100, seed: int = 0, batch_size: int = 25,
                   score_threshold: float = DEFAULT_SCORE_THRESHOLD, name: str = "vanish") -> PhysicalSuccess:
    """Digital and physical vanishing of the face in ``box`` (pixels) of ``image`` (3×H×W), attacked
    into ``image_adv``: the fraction of ``n_draws`` fresh transformations after which the detector
    (threshold, NMS) returns no box at IoU ≥ 0.5 with the moved face. The same draws are applied to
    ``image``: ``baseline`` is how often the transformations alone lose the face."""
    if image_adv.shape != image.shape or image.dim() != 3:
        raise InputError(f"vanish_success takes two 3×H×W images of one size, got {tuple(image.shape)} "
                         f"and {tuple(image_adv.shape)}")
    if n_draws < 1:
        raise InputError(f"n_draws must be at least 1, got {n_draws}")
    transform = physical() if transform is None else transform
    generator = torch.Generator().manual_seed(seed)
    face = torch.tensor(box, dtype=torch.float64)
    digital = not _found(detector.detect(image_adv, score_threshold), face)
    hits, clean = [], []
    for start in range(0, n_draws, batch_size):
        count = min(batch_size, n_draws - start)
        pair = torch.stack([image_adv, image]).repeat(count, 1, 1, 1)  # the same draw for both
        params = transform.sample(pair[::2], generator)
        params_pair = _repeat_interleave(params)
        boxes = moved_boxes(transform, params, box, pair[::2])
        found = detector.detect_batch(transform.apply(pair, params_pair), score_threshold)
        for k in range(count):
            hits.append(not _found(found[2 * k], boxes[k]))
            clean.append(not _found(found[2 * k + 1], boxes[k]))
    physical_rate = sum(hits) / n_draws
    return PhysicalSuccess(name=name, digital=float(digital), physical=physical_rate, baseline=sum(clean) / n_draws,
                           n_points=1, n_draws=n_draws, transform=transform.describe(), per_point=[physical_rate])


def _repeat_interleave(params):
    """A draw's parameters with every per-point entry doubled in place (row k twice), so that an
    image and its attacked version see the same draw."""
    if isinstance(params, dict):
        return {k: _repeat_interleave(v) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return type(params)(_repeat_interleave(p) for p in params)
    if isinstance(params, Tensor) and params.dim() > 0:
        return params.repeat_interleave(2, dim=0)
    return params
