"""Dodging, impersonation and vanishing with any attack of :mod:`advrobust.attacks`.

    outcome = dodge(pipeline, face, ar.attacks.PGD(ar.Linf(eps=4/255), steps=100))
    outcome.success, outcome.distance_before, outcome.distance_after

Dodging and impersonation perturb the 150×150 face crop the recognizer reads (the digital threat
model of Sharif et al., "Accessorize to a Crime", CCS 2016, without the physical constraint);
vanishing perturbs the whole photo the detector reads. Each success is re-checked with the
decision procedure itself (the distance against 0.6; the full detection with non-maximum
suppression), not only the adapter's logits.

With ``transform`` (e.g. :func:`advrobust.transforms.physical`), the attack sees the model through
``draws`` fresh draws of it per step, averaged (EOT, Athalye et al. 2018): a physical attack when the
threat is a wearable support (``ar.Masked(eyeglass_mask(face))``); :mod:`advrobust.faces.physical`
measures it under fresh transformations. The success reported here stays the digital one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from advrobust.attacks.base import Attack
from advrobust.faces.adapters import DIFFERENT, PRESENT, SAME, VanishClassifier, VerificationClassifier
from advrobust.faces.detection import Detection, box_iou
from advrobust.faces.images import Box
from advrobust.faces.physical import VanishUnderTransforms
from advrobust.faces.pipeline import Face, FacePipeline
from advrobust.transforms import Transform
from advrobust.transforms.model import TransformedModel

MODES = ("dodge", "impersonate", "vanish")


@dataclass
class FaceAttackOutcome:
    """What one face attack did. ``before``/``after``: the perturbed input (crop, or photo for vanishing)."""

    mode: str
    success: bool
    norm: float
    before: torch.Tensor
    after: torch.Tensor
    distance_before: float | None = None
    distance_after: float | None = None
    box: tuple[float, float, float, float] | None = None
    detections_before: list[Detection] = field(default_factory=list)
    detections_after: list[Detection] = field(default_factory=list)
    queries: int = 0


def _verification(
    pipeline: FacePipeline, face: Face, reference: torch.Tensor, attack: Attack, mode: str,
    transform: Transform | None, draws: int,
) -> FaceAttackOutcome:
    model = VerificationClassifier(pipeline.recognizer, reference, pipeline.threshold)
    seen = model if transform is None else TransformedModel(model, transform, draws=draws)
    x = face.crop.unsqueeze(0)
    if mode == "dodge":
        result = attack(seen, x, torch.tensor([SAME]))
    else:
        result = attack(seen, x, torch.tensor([DIFFERENT]), target=torch.tensor([SAME]))
    with torch.no_grad():
        before, after = float(model.distance(x)), float(model.distance(result.x_adv))
    success = after >= pipeline.threshold if mode == "dodge" else after < pipeline.threshold
    return FaceAttackOutcome(
        mode, success, float(result.norm[0]), face.crop, result.x_adv[0], before, after,
        queries=int(result.queries[0]),
    )


def dodge(pipeline: FacePipeline, face: Face, attack: Attack, transform: Transform | None = None,
          draws: int = 4) -> FaceAttackOutcome:
    """Make ``face`` stop matching its own descriptor (distance ≥ 0.6): untargeted, y = same."""
    return _verification(pipeline, face, face.descriptor, attack, "dodge", transform, draws)


def impersonate(pipeline: FacePipeline, face: Face, target: Face, attack: Attack,
                transform: Transform | None = None, draws: int = 4) -> FaceAttackOutcome:
    """Make ``face`` match ``target`` (distance < 0.6): targeted at "same" against the target's descriptor."""
    return _verification(pipeline, face, target.descriptor, attack, "impersonate", transform, draws)


def still_detected(detections: list[Detection], box: tuple[float, float, float, float], iou: float = 0.5) -> bool:
    """Whether a detection overlaps ``box`` at IoU ≥ ``iou``."""
    reference = torch.tensor(box, dtype=torch.float64)
    return any(box_iou(torch.tensor(d.box, dtype=torch.float64), reference).item() >= iou for d in detections)


def vanish(pipeline: FacePipeline, image: torch.Tensor, face: Face, attack: Attack,
           transform: Transform | None = None, draws: int = 4, box: Box | None = None) -> FaceAttackOutcome:
    """Make the detector lose ``face`` in ``image`` (no detection at IoU ≥ 0.5): untargeted, y = present.
    ``box``: the face's box in ``image`` when ``image`` is not the face's own photo (a
    :func:`~advrobust.faces.physical.face_scene`); under ``transform`` the box moves with each draw
    (:class:`~advrobust.faces.physical.VanishUnderTransforms`)."""
    box = face.box if box is None else box
    size = tuple(image.shape[-2:])
    if transform is None:
        model = VanishClassifier(pipeline.detector, box, size, pipeline.score_threshold)
    else:
        model = VanishUnderTransforms(pipeline.detector, box, size, transform, draws,
                                      score_threshold=pipeline.score_threshold)
    result = attack(model, image.unsqueeze(0), torch.tensor([PRESENT]))
    after = result.x_adv[0]
    found_before = pipeline.detector.detect(image, pipeline.score_threshold)
    found_after = pipeline.detector.detect(after, pipeline.score_threshold)
    return FaceAttackOutcome(
        "vanish", not still_detected(found_after, box), float(result.norm[0]), image, after,
        box=box, detections_before=found_before, detections_after=found_after, queries=int(result.queries[0]),
    )
