"""Faces: a real face detector and a real face recognizer, loaded from their published weights.

    import advrobust as ar
    faces = ar.faces.FacePipeline.load()               # after `advrobust data download faces`
    faces.verify("a.jpg", "b.jpg").same                 # dlib's rule: distance < 0.6

Models (face-api 1.7.15, MIT, TF.js weights converted once): dlib's face-recognition ResNet
(:mod:`advrobust.faces.recognition`) and the tiny face detector (:mod:`advrobust.faces.detection`).
Attacks go through the classifier adapters of :mod:`advrobust.faces.adapters` (dodging,
impersonation, vanishing); physical ones (eyeglass frames, EOT, vanishing under transformations)
through :mod:`advrobust.faces.physical`. See docs/faces.md.
"""

from __future__ import annotations

from advrobust.faces.adapters import ABSENT, DIFFERENT, PRESENT, SAME, VanishClassifier, VerificationClassifier
from advrobust.faces.detection import Detection, TinyFaceDetector, TinyFaceDetectorNet
from advrobust.faces.images import crop_face, load_image, save_image
from advrobust.faces.models import load_detector, load_recognizer
from advrobust.faces.physical import FaceScene, VanishUnderTransforms, face_scene
from advrobust.faces.pipeline import Face, FacePipeline, Verification, jittered_crop
from advrobust.faces.recognition import SAME_PERSON_THRESHOLD, FaceRecognitionNet, face_distance
from advrobust.faces.weights import download_faces, is_available

__all__ = [
    "ABSENT", "DIFFERENT", "PRESENT", "SAME", "SAME_PERSON_THRESHOLD", "Detection", "Face", "FacePipeline",
    "FaceRecognitionNet", "FaceScene", "TinyFaceDetector", "TinyFaceDetectorNet", "VanishClassifier",
    "VanishUnderTransforms", "Verification", "VerificationClassifier", "crop_face", "download_faces",
    "face_distance", "face_scene", "is_available", "jittered_crop", "load_detector", "load_image",
    "load_recognizer", "save_image",
]
