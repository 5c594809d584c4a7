"""Find, cut out, describe and compare faces: face-api's pipeline on the ported models.

    faces = FacePipeline.load()
    found = faces.find(load_image("a.jpg"))          # [Face(box, score, crop, descriptor), ...]
    result = faces.verify("a.jpg", "b.jpg")           # the best face of each: distance, same person?

As face-api's ``detectAllFaces(...).withFaceLandmarks().withFaceDescriptors()``: the detector's box
is cut out (clipped at the image borders and floored, padded to a square, resized to 112×112), the
landmark network places 68 points, the face is cut out again from the dlib-style aligned box
(a square placed by the eye and mouth centres, :func:`advrobust.faces.landmarks.aligned_box`) at
150×150 and described by the recognizer. Same person when the distance is below 0.6.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from advrobust.errors import InputError
from advrobust.faces.detection import DEFAULT_SCORE_THRESHOLD, TinyFaceDetector
from advrobust.faces.images import Box, clip_box, crop_face, load_image
from advrobust.faces.landmarks import INPUT_SIZE as LANDMARK_INPUT_SIZE
from advrobust.faces.landmarks import FaceLandmark68Net, aligned_box, landmarks_in_image
from advrobust.faces.models import load_detector, load_landmarker, load_recognizer
from advrobust.faces.recognition import SAME_PERSON_THRESHOLD, FaceRecognitionNet, face_distance
from advrobust.faces.weights import demo_photo_paths


@dataclass
class Face:
    """One face of a photo: the detector's ``box`` (x, y, width, height) in pixels and ``score``, the 68
    ``landmarks`` (68×2 pixels), the ``aligned`` box, its 150×150 ``crop`` and the crop's ``descriptor``."""

    source: str
    box: Box
    score: float
    landmarks: torch.Tensor
    aligned: Box
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
    """A re-crop (1×3×150×150) of the face in ``box``, each side moved by up to ``amount`` of the box size (uniform)."""
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
        landmarker: FaceLandmark68Net,
        recognizer: FaceRecognitionNet,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        threshold: float = SAME_PERSON_THRESHOLD,
    ) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.recognizer = recognizer
        self.score_threshold = score_threshold
        self.threshold = threshold

    @classmethod
    def load(cls, folder: Path | None = None, input_size: int = 416) -> FacePipeline:
        """The published models from the cache (``advrobust data download faces`` puts them there)."""
        return cls(load_detector(input_size, folder), load_landmarker(folder), load_recognizer(folder))

    @torch.no_grad()
    def describe(self, crops: torch.Tensor) -> torch.Tensor:
        """Descriptors N×128 of face crops N×3×150×150."""
        return self.recognizer(crops)

    @torch.no_grad()
    def landmarks(self, image: torch.Tensor, box: Box) -> torch.Tensor:
        """The 68 landmarks (68×2, image pixels) of the face the detector put in ``box``."""
        _, _, width, height = clip_box(box, image.shape[-1], image.shape[-2])
        relative = self.landmarker(crop_face(image, box, LANDMARK_INPUT_SIZE))[0]
        return landmarks_in_image(relative, (width, height), (box[0], box[1]))

    def find(self, image: torch.Tensor, source: str = "") -> list[Face]:
        """Every face the detector finds in ``image`` (3×H×W in [0, 1]), aligned and described, best score first."""
        faces = []
        for detection in self.detector.detect(image, self.score_threshold):
            points = self.landmarks(image, detection.box)
            _, _, width, height = clip_box(detection.box, image.shape[-1], image.shape[-2])
            aligned = aligned_box(points, (width, height))
            crop = crop_face(image, aligned)
            faces.append(Face(source, detection.box, detection.score, points, aligned, crop[0], self.describe(crop)[0]))
        return faces

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
