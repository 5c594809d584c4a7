"""Find, cut out, describe and compare faces: face-api's pipeline on the ported models.

    faces = FacePipeline.load()
    found = faces.find(load_image("a.jpg"))          # [Face(box, score, crop, descriptor), ...]
    result = faces.verify("a.jpg", "b.jpg")           # the best face of each: distance, same person?

A face is the detector's box, cut out as face-api's ``extractFaceTensors`` does (box clipped at
the image borders and floored), padded to a square and resized to 150×150 (no landmark alignment),
then described by the recognizer. Same person when the distance is below 0.6.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from advrobust.errors import InputError
from advrobust.faces.detection import DEFAULT_SCORE_THRESHOLD, TinyFaceDetector
from advrobust.faces.images import Box, crop_face, load_image
from advrobust.faces.models import load_detector, load_recognizer
from advrobust.faces.recognition import SAME_PERSON_THRESHOLD, FaceRecognitionNet, face_distance
from advrobust.faces.weights import demo_photo_paths


@dataclass
class Face:
    """One face of a photo: ``box`` (x, y, width, height) in pixels, detector ``score``, 150×150 crop, descriptor."""

    source: str
    box: Box
    score: float
    crop: torch.Tensor
    descriptor: torch.Tensor


@dataclass
class Verification:
    """The comparison of two faces: Euclidean ``distance`` and the decision ``same`` (distance < threshold)."""

    first: Face
    second: Face
    distance: float
    threshold: float

    @property
    def same(self) -> bool:
        return self.distance < self.threshold


def jittered_crop(image: torch.Tensor, box: Box, generator: torch.Generator, amount: float = 0.05) -> torch.Tensor:
    """A re-crop of the face in ``box`` with its corners moved by up to ``amount`` of the box size (uniform)."""
    x, y, w, h = box
    offsets = (torch.rand(4, generator=generator, dtype=torch.float64) * 2 - 1) * amount
    left, top = x + offsets[0].item() * w, y + offsets[1].item() * h
    right, bottom = x + w + offsets[2].item() * w, y + h + offsets[3].item() * h
    return crop_face(image, (left, top, right - left, bottom - top))


class FacePipeline:
    """A detector and a recognizer: find faces, describe them, compare them."""

    def __init__(
        self,
        detector: TinyFaceDetector,
        recognizer: FaceRecognitionNet,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        threshold: float = SAME_PERSON_THRESHOLD,
    ) -> None:
        self.detector = detector
        self.recognizer = recognizer
        self.score_threshold = score_threshold
        self.threshold = threshold

    @classmethod
    def load(cls, folder: Path | None = None, input_size: int = 416) -> FacePipeline:
        """The published models from the cache (``advrobust data download faces`` puts them there)."""
        return cls(load_detector(input_size, folder), load_recognizer(folder))

    @torch.no_grad()
    def describe(self, crops: torch.Tensor) -> torch.Tensor:
        """Descriptors N×128 of face crops N×3×150×150."""
        return self.recognizer(crops)

    def find(self, image: torch.Tensor, source: str = "") -> list[Face]:
        """Every face the detector finds in ``image`` (3×H×W in [0, 1]), best score first."""
        detections = self.detector.detect(image, self.score_threshold)
        if not detections:
            return []
        crops = torch.cat([crop_face(image, d.box) for d in detections])
        descriptors = self.describe(crops)
        return [
            Face(source, d.box, d.score, crop, descriptor)
            for d, crop, descriptor in zip(detections, crops, descriptors, strict=True)
        ]

    def best_face(self, image: torch.Tensor | str | Path) -> Face:
        """The highest-scoring face of an image (a tensor or a path); :class:`InputError` when there is none."""
        source = str(image) if isinstance(image, str | Path) else ""
        pixels = load_image(image) if isinstance(image, str | Path) else image
        faces = self.find(pixels, source)
        if not faces:
            raise InputError(f"no face found in {source or 'the image'} (detector threshold {self.score_threshold})")
        return faces[0]

    def verify(self, first: torch.Tensor | str | Path, second: torch.Tensor | str | Path) -> Verification:
        """Compare the best face of each image."""
        a, b = self.best_face(first), self.best_face(second)
        distance = float(face_distance(a.descriptor, b.descriptor))
        return Verification(a, b, distance, self.threshold)

    def demo_faces(self) -> list[Face]:
        """Every face found in the six demo photos of face-api (the built-in face data)."""
        faces: list[Face] = []
        for path in demo_photo_paths():
            faces += self.find(load_image(path), path.name)
        return faces
