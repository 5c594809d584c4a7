"""Faces in the physical world: perturbations a person can wear, seen through a camera.

* **Eyeglass dodging and impersonation** (Sharif, Bhagavatula, Bauer & Reiter, "Accessorize to a
  crime", CCS 2016): the frames of :func:`advrobust.faces.accessories.eyeglass_mask` on the face
  crop, attacked through the recognizer seen under a transformation distribution
  (:class:`advrobust.transforms.model.TransformedModel`, EOT of Athalye et al. 2018) and measured
  under fresh draws with :func:`advrobust.evaluation.physical.perturbation_success`; see
  :func:`advrobust.faces.attack.dodge` and :func:`advrobust.faces.attack.impersonate`.
* **Vanishing from the detector** (the physical analogue of Thys, Van Ranst & Goedemé, "Fooling
  automated surveillance cameras", CVPRW 2019, here on a face detector): the photo around one face
  (:func:`face_scene`) with a wearable region painted, attacked through
  :class:`VanishUnderTransforms` and measured by :func:`advrobust.evaluation.vanish.vanish_success`.
  A transformation moves the picture, so the face's box moves with it (:func:`moved_boxes`); a draw
  counts as vanished only when the full detection (score threshold and non-maximum suppression)
  returns no box at IoU ≥ 0.5 with the face where it now is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.errors import InputError
from advrobust.faces.adapters import VanishClassifier, two_class
from advrobust.faces.detection import DEFAULT_SCORE_THRESHOLD, TinyFaceDetector
from advrobust.faces.images import Box
from advrobust.faces.pipeline import Face
from advrobust.transforms import Transform, physical


@dataclass
class FaceScene:
    """A square photo of one face: ``image`` (3×size×size), the face's ``box`` in its pixels
    (x, y, width, height) and the ``region`` of the original photo it shows (photo pixels)."""

    image: Tensor
    box: Box
    region: Box


def face_scene(photo: Tensor, face: Face, context: float = 2.0, size: int = 416) -> FaceScene:
    """The square of side ``context`` × the face box's longer side, centred on the face, cut from
    ``photo`` (3×H×W; black beyond its edges) and resized to ``size`` (bilinear, antialiased): the
    picture a camera framing this person would take. 416 is the detector's own input size, so the
    detector reads the scene without resizing it."""
    if context < 1:
        raise InputError(f"face_scene: context is the scene's side over the face's, at least 1; got {context!r}")
    x, y, w, h = face.box
    side = max(1, math.ceil(context * max(w, h)))
    left, top = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    height, width = photo.shape[-2:]
    canvas = torch.zeros(3, side, side, dtype=photo.dtype)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"face box {face.box} lies outside the {width}×{height} photo")
    canvas[:, y0 - top : y1 - top, x0 - left : x1 - left] = photo[:, y0:y1, x0:x1]
    image = F.interpolate(canvas[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    k = size / side
    return FaceScene(image[0].clamp(0, 1), ((x - left) * k, (y - top) * k, w * k, h * k),
                     (float(left), float(top), float(side), float(side)))


def moved_boxes(transform: Transform, params, box: Box, images: Tensor) -> Tensor:
    """Where the face in ``box`` (pixels) is in each of the ``images`` (``N×C×H×W``, before the
    transformation) after ``transform`` with ``params`` (their draw): ``N×4`` boxes (x, y, width,
    height, pixels) through the moved midpoints of the box's four sides. For a shift or a zoom this
    is the moved box exactly; for a rotation it keeps about the face's size, as a detector's box of
    a tilted face does (the box around the moved corners of a square grows by 22% per side at 15°,
    and would flatter the vanishing)."""
    x, y, w, h = box
    sides = torch.tensor([[x + w / 2, y], [x + w, y + h / 2], [x + w / 2, y + h], [x, y + h / 2]],
                         dtype=images.dtype, device=images.device)
    points = transform.move_points(sides.expand(images.shape[0], 4, 2), params, tuple(images.shape[-2:]))
    low, high = points.amin(dim=1), points.amax(dim=1)
    return torch.cat([low, high - low], dim=1)


class VanishUnderTransforms(nn.Module):
    """A face detector seen through ``transform``, as a 2-class model (present, absent) for EOT.

    ``forward(x)``: each image is transformed ``draws`` times (fresh draws), the face's box moved with
    it (:func:`moved_boxes`), and the vanishing margin ``m`` of
    :class:`~advrobust.faces.adapters.VanishClassifier` (best anchor over the face minus the score
    threshold's logit) taken per draw, floored at ``−kappa`` and averaged: a hinge (the confidence
    ``κ`` of Carlini & Wagner 2017) so that a draw already vanished by ``κ`` stops pulling and the
    attack works on the draws where the face is still found.
    """

    def __init__(self, detector: TinyFaceDetector, box: Box, image_size: tuple[int, int],
                 transform: Transform | None = None, draws: int = 4, seed: int = 0, kappa: float = 1.0,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> None:
        super().__init__()
        if isinstance(draws, bool) or int(draws) != draws or draws < 1:
            raise InputError(f"VanishUnderTransforms: draws must be an integer >= 1, got {draws!r}")
        if not kappa >= 0:
            raise InputError(f"VanishUnderTransforms: kappa must be >= 0, got {kappa!r}")
        self.vanish = VanishClassifier(detector, box, image_size, score_threshold)
        self.box = tuple(float(v) for v in box)
        self.transform = physical() if transform is None else transform
        self.draws, self.kappa, self.seed = int(draws), float(kappa), int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def forward(self, x: Tensor) -> Tensor:
        if self.generator.device != x.device:
            self.generator = torch.Generator(device=x.device).manual_seed(self.seed)
        rows = x.repeat(self.draws, 1, 1, 1)  # draw-major: draw k of image i at k·N + i
        params = self.transform.sample(rows, self.generator)
        h, w = x.shape[-2:]
        boxes = moved_boxes(self.transform, params, self.box, rows)
        relative = (boxes / torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)).to(x.dtype)
        margin = self.vanish.margin(self.transform.apply(rows, params), relative).clamp_min(-self.kappa)
        return two_class(margin.reshape(self.draws, x.shape[0]).mean(dim=0))
