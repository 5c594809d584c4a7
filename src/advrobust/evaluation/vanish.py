"""The physical vanishing rate of a face from a detector, under fresh transformations.

The measurement behind :mod:`advrobust.faces.physical`'s vanishing attack: a transformation moves
the picture, so the face's box moves with it (:func:`advrobust.faces.physical.moved_boxes`), and a
draw counts as vanished only when the full detection (score threshold and non-maximum suppression)
returns no box at IoU ≥ 0.5 with the face where it now is. The result is the
:class:`~advrobust.evaluation.physical.PhysicalSuccess` of every other physical attack.
"""

from __future__ import annotations

from collections.abc import Sequence

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
                   score_threshold: float = DEFAULT_SCORE_THRESHOLD, strengths: Sequence[float] = (),
                   curve_draws: int | None = None, name: str = "vanish") -> PhysicalSuccess:
    """Digital and physical vanishing of the face in ``box`` (pixels) of ``image`` (3×H×W), attacked
    into ``image_adv``: the fraction of ``n_draws`` fresh transformations after which the detector
    (threshold, NMS) returns no box at IoU ≥ 0.5 with the moved face. The same draws are applied to
    ``image``: ``baseline`` is how often the transformations alone lose the face. ``strengths``:
    the vanishing rate under ``transform.scaled(s)`` for each, on ``curve_draws`` draws (default
    ``n_draws``), as the result's ``curve``."""
    if image_adv.shape != image.shape or image.dim() != 3:
        raise InputError(f"vanish_success takes two 3×H×W images of one size, got {tuple(image.shape)} "
                         f"and {tuple(image_adv.shape)}")
    if n_draws < 1:
        raise InputError(f"n_draws must be at least 1, got {n_draws}")
    transform = physical() if transform is None else transform
    generator = torch.Generator().manual_seed(seed)
    face = torch.tensor(box, dtype=torch.float64)
    digital = not _found(detector.detect(image_adv, score_threshold), face)

    def vanished(t: Transform, draws: int, with_clean: bool = True) -> tuple[list[bool], list[bool]]:
        """Per draw of ``t``: whether the attacked face vanished, and (``with_clean``) whether the
        clean one did under the same draw."""
        hits, clean = [], []
        pictures = torch.stack([image_adv, image] if with_clean else [image_adv])
        p = len(pictures)
        for start in range(0, draws, batch_size):
            count = min(batch_size, draws - start)
            rows = pictures.repeat(count, 1, 1, 1)  # draw k: rows k·p … k·p + p − 1, one draw for all p
            params = t.sample(rows[::p], generator)
            boxes = moved_boxes(t, params, box, rows[::p])
            found = detector.detect_batch(t.apply(rows, _repeat_interleave(params, p)), score_threshold)
            for k in range(count):
                hits.append(not _found(found[p * k], boxes[k]))
                if with_clean:
                    clean.append(not _found(found[p * k + 1], boxes[k]))
        return hits, clean

    hits, clean = vanished(transform, n_draws)
    per_strength = n_draws if curve_draws is None else max(1, int(curve_draws))
    curve = [(float(s), _share(vanished(transform.scaled(s), per_strength, with_clean=False)[0])) for s in strengths]
    return PhysicalSuccess(name=name, digital=float(digital), physical=_share(hits), baseline=_share(clean),
                           n_points=1, n_draws=n_draws, transform=transform.describe(), per_point=[_share(hits)],
                           curve=curve)


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def _repeat_interleave(params, times: int = 2):
    """A draw's parameters with every per-point entry repeated ``times`` in place (row k ``times``
    over), so that an image and its attacked version see the same draw."""
    if isinstance(params, dict):
        return {k: _repeat_interleave(v, times) for k, v in params.items()}
    if isinstance(params, list | tuple):
        return type(params)(_repeat_interleave(p, times) for p in params)
    if isinstance(params, Tensor) and params.dim() > 0:
        return params.repeat_interleave(times, dim=0)
    return params
