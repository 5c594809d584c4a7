"""The published face models as ready PyTorch modules (weights from :mod:`advrobust.faces.weights`)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from advrobust.errors import DataError
from advrobust.faces.detection import DEFAULT_INPUT_SIZE, TinyFaceDetector, TinyFaceDetectorNet
from advrobust.faces.landmarks import FaceLandmark68Net
from advrobust.faces.recognition import FaceRecognitionNet
from advrobust.faces.weights import load_weights


def _loaded(module: nn.Module, name: str, folder: Path | None) -> nn.Module:
    tensors, _ = load_weights(name, folder)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise DataError(f"converted {name!r} weights do not fit the network ({exc}); download them again") from exc
    module.eval().requires_grad_(False)
    return module


def load_recognizer(folder: Path | None = None) -> FaceRecognitionNet:
    """dlib's face-recognition ResNet with face-api's published weights, in eval mode, frozen."""
    return _loaded(FaceRecognitionNet(), "face_recognition", folder)


def load_detector(input_size: int = DEFAULT_INPUT_SIZE, folder: Path | None = None) -> TinyFaceDetector:
    """face-api's tiny face detector with its published weights, in eval mode, frozen. Its
    convolution weights are kept channels-last: at 416×416 the network ran 1.4–1.6× faster on a CPU
    (the same sums in another order; the detections still match the original's)."""
    net = _loaded(TinyFaceDetectorNet(), "tiny_face_detector", folder).to(memory_format=torch.channels_last)
    return TinyFaceDetector(net, input_size).eval()


def load_landmarker(folder: Path | None = None) -> FaceLandmark68Net:
    """face-api's 68-point landmark network with its published weights, in eval mode, frozen."""
    return _loaded(FaceLandmark68Net(), "face_landmark_68", folder)
