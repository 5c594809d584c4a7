"""Face verification and face detection seen as 2-class classifiers, so every classifier attack applies.

The attacks of :mod:`advrobust.attacks` take a model ``x → logits (N×K)`` and a label. These small
modules turn the face tasks into that form; a task layer can wrap them as they are (the decision
and its margin are explicit below).

* :class:`VerificationClassifier` — a recognizer and one reference descriptor. Logits
  ``(same, different) = ((τ − d)/2, (d − τ)/2)`` with ``d`` the Euclidean distance of the probe's
  descriptor to the reference and ``τ`` the threshold (0.6): the predicted class is "same" exactly
  when ``d < τ`` (dlib's rule), and the logit difference ``τ − d`` is the margin.
  **Dodging** (a face must stop matching its own reference): untargeted, ``y = SAME``.
  **Impersonation** (face A must match B): reference = B's descriptor, targeted, ``target = SAME``
  (with ``y = DIFFERENT``).
* :class:`VanishClassifier` — a detector and one face box. With ``s_a`` the score logit of anchor
  ``a`` and ``σ⁻¹(θ)`` the logit of the score threshold, logits ``(present, absent) = (m/2, −m/2)``,
  ``m = max_{a : IoU(box_a, face) ≥ 0.5} (s_a − σ⁻¹(θ))`` over the anchors whose *current* decoded box
  overlaps the face at IoU ≥ 0.5 (a large negative value when none does). "present" is predicted
  exactly when some anchor over the face scores above the threshold before non-maximum
  suppression — a face the detector returns is always "present", so a success ("absent") is
  never over-counted. **Vanishing**: untargeted, ``y = PRESENT``. Like DAG (Xie et al., "Adversarial
  Examples for Semantic Segmentation and Object Detection", ICCV 2017), the objective lowers the
  scores of all proposals on the face, here through the best one at each step.

One reference (or box) per module: a batch holds probes against the same reference (attacks
evaluate sub-batches of the points still unbroken, so per-point references cannot ride along).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advrobust.errors import InputError
from advrobust.faces.detection import DEFAULT_SCORE_THRESHOLD, TinyFaceDetector, box_iou
from advrobust.faces.recognition import DESCRIPTOR_SIZE, SAME_PERSON_THRESHOLD, FaceRecognitionNet, face_distance

SAME, DIFFERENT = 0, 1
PRESENT, ABSENT = 0, 1
VANISH_IOU = 0.5
_NO_ANCHOR = -1e4  # margin when no anchor overlaps the face


def two_class(margin: torch.Tensor) -> torch.Tensor:
    """Logits ``(m/2, −m/2)`` of a margin ``m``: class 0 exactly when ``m > 0``, the logit gap ``m``."""
    return torch.stack([margin / 2, -margin / 2], dim=1)


class VerificationClassifier(nn.Module):
    """Faces N×3×150×150 → logits (same, different) against one reference descriptor."""

    def __init__(
        self, recognizer: FaceRecognitionNet, reference: torch.Tensor, threshold: float = SAME_PERSON_THRESHOLD
    ) -> None:
        super().__init__()
        if reference.numel() != DESCRIPTOR_SIZE:
            raise InputError(
                f"the reference must be one {DESCRIPTOR_SIZE}-d descriptor, got shape {tuple(reference.shape)}"
            )
        self.recognizer = recognizer
        self.register_buffer("reference", reference.detach().reshape(1, DESCRIPTOR_SIZE).clone())
        self.threshold = float(threshold)

    def distance(self, faces: torch.Tensor) -> torch.Tensor:
        return face_distance(self.recognizer(faces), self.reference)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return two_class(self.threshold - self.distance(faces))


class VanishClassifier(nn.Module):
    """Images N×3×H×W → logits (present, absent) of the face in ``box`` (pixels: x, y, width, height)."""

    def __init__(
        self,
        detector: TinyFaceDetector,
        box: tuple[float, float, float, float],
        image_size: tuple[int, int],
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    ) -> None:
        super().__init__()
        if not 0 < score_threshold < 1:
            raise InputError(f"score_threshold must lie in (0, 1), got {score_threshold}")
        height, width = image_size
        self.detector = detector
        self.image_size = (int(height), int(width))
        relative = torch.tensor(box, dtype=torch.float32) / torch.tensor([width, height, width, height])
        self.register_buffer("box", relative)
        self.score_logit = math.log(score_threshold / (1 - score_threshold))

    def margin(self, images: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """``m`` per image; ``boxes`` (``N×4``, relative ``x, y, width, height``): where the face is in
        each image, when not at ``box`` (a transformed picture moves it)."""
        if tuple(images.shape[-2:]) != self.image_size:
            raise InputError(f"expected images of size {self.image_size}, got {tuple(images.shape[-2:])}")
        anchors, logits = self.detector(images)
        face = self.box if boxes is None else boxes[:, None, :]
        over_face = box_iou(anchors, face) >= VANISH_IOU
        margins = torch.where(over_face, logits - self.score_logit, torch.full_like(logits, _NO_ANCHOR))
        return margins.amax(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return two_class(self.margin(images))
