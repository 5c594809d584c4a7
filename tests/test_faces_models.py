"""The face networks and their geometry on random weights and hand-made cases (no weights needed)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advrobust.errors import InputError
from advrobust.faces import adapters
from advrobust.faces.detection import ANCHORS, TinyFaceDetectorNet, _max_pool_same, decode, non_max_suppression
from advrobust.faces.images import clip_box, crop_face
from advrobust.faces.landmarks import FaceLandmark68Net, _same_pad, aligned_box, landmarks_in_image
from advrobust.faces.recognition import FaceRecognitionNet
from advrobust.faces.resize import js_round, pad_to_square, resize_bilinear


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return module.eval().requires_grad_(False)


def test_legacy_bilinear_resize_matches_tensorflow_rule():
    row = torch.tensor([[[[0.0, 10.0]]]])  # 1×1×1×2
    up = resize_bilinear(row.expand(1, 1, 2, 2), 4)  # source x = 0, 0.5, 1, 1.5 (clamped): 0, 5, 10, 10
    assert up[0, 0, 0].tolist() == [0.0, 5.0, 10.0, 10.0]
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resize_bilinear(x, 2), x[..., ::2, ::2])  # in/out = 2: every other pixel, no blending
    assert resize_bilinear(x, 4) is x


def test_pad_to_square_rounds_like_javascript():
    x = torch.ones(1, 3, 4, 9)
    centred = pad_to_square(x, centered=True)  # diff 5: round(2.5) = 3 after, 2 before
    assert centred.shape == (1, 3, 9, 9)
    assert centred[0, 0, :, 0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0]
    assert pad_to_square(x, centered=False)[0, 0, :, 0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert [js_round(v) for v in (0.5, 1.5, 2.5, -0.5)] == [1, 2, 3, 0]


def test_same_max_pool_ignores_padding():
    x = -torch.arange(9.0).view(1, 1, 3, 3) - 1  # all negative: a zero pad would win the max
    out = _max_pool_same(x, 2)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0].tolist() == [[-1.0, -3.0], [-7.0, -9.0]]
    assert _max_pool_same(x, 1)[0, 0, 2, 2].item() == -9.0


def test_decode_zero_output_gives_anchor_boxes_at_cell_centres():
    cells = 13
    boxes, logits = decode(torch.zeros(1, 25, cells, cells), (416, 416), 416)
    assert boxes.shape == (1, cells * cells * 5, 4)
    assert torch.all(logits == 0)
    first = boxes[0, 0]  # row 0, col 0, anchor 0
    w, h = ANCHORS[0][0] / cells, ANCHORS[0][1] / cells
    assert first.tolist() == pytest.approx([0.5 / cells - w / 2, 0.5 / cells - h / 2, w, h])
    # a landscape image: boxes are relative to the image, stretched by the padding's correction
    wide, _ = decode(torch.zeros(1, 25, cells, cells), (200, 400), 416)
    assert wide[0, 0, 1].item() == pytest.approx(first[1].item() * 2)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10]], dtype=torch.float64)
    assert non_max_suppression(boxes, torch.tensor([0.6, 0.9, 0.7]), 0.4) == [1, 2]


def test_networks_shapes_and_input_checks():
    recognizer = _randomize(FaceRecognitionNet())
    out = recognizer(torch.rand(2, 3, 150, 150))
    assert out.shape == (2, 128) and torch.isfinite(out).all()
    with pytest.raises(InputError, match="150×150"):
        recognizer(torch.rand(1, 3, 160, 160))
    landmarker = _randomize(FaceLandmark68Net())
    assert landmarker(torch.rand(2, 3, 112, 112)).shape == (2, 68, 2)
    detector = _randomize(TinyFaceDetectorNet())
    assert detector(torch.rand(1, 3, 416, 416)).shape == (1, 25, 13, 13)
    assert detector(torch.rand(1, 3, 224, 224)).shape == (1, 25, 7, 7)


def test_crop_face_clips_floors_and_is_differentiable():
    assert clip_box((-5.5, 10.7, 30.2, 500.0), 100, 200) == (0, 10, 24, 189)
    image = torch.rand(3, 60, 80, requires_grad=True)
    crop = crop_face(image, (10.4, 5.2, 30.0, 40.0))
    assert crop.shape == (1, 3, 150, 150)
    crop.sum().backward()
    assert image.grad[:, 5:45, 10:40].abs().sum() > 0 and image.grad[:, 50:, :].abs().sum() == 0
    with pytest.raises(InputError, match="outside"):
        crop_face(image, (200.0, 0.0, 10.0, 10.0))


def test_verification_classifier_decides_by_the_threshold():
    recognizer = _randomize(FaceRecognitionNet())
    faces = torch.rand(6, 3, 150, 150)
    descriptors = recognizer(faces)
    distances = (descriptors - descriptors[0]).norm(dim=1)
    ordered = distances[1:].sort().values
    threshold = float(ordered[2:4].mean())  # between two distances: some faces on each side
    model = adapters.VerificationClassifier(recognizer, descriptors[0], threshold)
    logits = model(faces)
    assert torch.allclose(logits[:, 0] - logits[:, 1], threshold - distances, atol=1e-5)
    assert torch.equal(logits.argmax(1) == adapters.SAME, distances < threshold)
    with pytest.raises(InputError, match="one 128-d descriptor"):
        adapters.VerificationClassifier(recognizer, descriptors[:2])


class _FixedDetector(nn.Module):
    """Anchors with fixed relative boxes; score logits read from the image's mean (to move them)."""

    def __init__(self, boxes, offsets):
        super().__init__()
        self.boxes = torch.tensor(boxes)
        self.offsets = torch.tensor(offsets)

    def forward(self, images):
        level = images.mean(dim=(1, 2, 3))[:, None]
        return self.boxes.expand(len(images), -1, -1), level + self.offsets


def test_vanish_classifier_counts_only_anchors_over_the_face():
    face = (20.0, 10.0, 40.0, 40.0)  # pixels in a 100×100 image
    relative = [[0.2, 0.1, 0.4, 0.4], [0.21, 0.1, 0.4, 0.4], [0.6, 0.6, 0.3, 0.3]]
    detector = _FixedDetector(relative, [-1.0, -2.0, 5.0])  # the high-scoring anchor is elsewhere
    model = adapters.VanishClassifier(detector, face, (100, 100), score_threshold=0.5)
    images = torch.full((2, 3, 100, 100), 0.5)
    images[1] = 1.5
    margins = model.margin(images)
    assert margins.tolist() == pytest.approx([0.5 - 1.0, 1.5 - 1.0])  # best overlapping anchor: level − 1
    assert model(images).argmax(1).tolist() == [adapters.ABSENT, adapters.PRESENT]
    far = adapters.VanishClassifier(detector, (0.0, 0.0, 5.0, 5.0), (100, 100))
    assert far(images).argmax(1).tolist() == [adapters.ABSENT, adapters.ABSENT]
    strict = adapters.VanishClassifier(detector, face, (100, 100), score_threshold=0.9)
    assert strict.margin(images)[1].item() == pytest.approx(0.5 - math.log(9))
    with pytest.raises(InputError, match="size"):
        model(torch.rand(1, 3, 50, 50))


def test_tf_same_padding_puts_the_extra_pixel_after():
    x = torch.ones(1, 1, 112, 112)
    assert _same_pad(x, 2).shape[-2:] == (113, 113)  # stride 2, even size: one pixel, after
    assert _same_pad(x, 2)[0, 0, 0, 0].item() == 1 and _same_pad(x, 2)[0, 0, -1, -1].item() == 0
    assert _same_pad(x, 1).shape[-2:] == (114, 114) and _same_pad(x, 1)[0, 0, 0, 0].item() == 0


def test_landmarks_undo_the_square_padding():
    # a 100×50 crop is padded to 100×100 (25 rows above): the input point (0.5, 0.25) is the crop's top centre
    points = landmarks_in_image(torch.tensor([[0.5, 0.25], [1.0, 0.75]]), (100, 50), (10.0, 20.0))
    assert points.flatten().tolist() == pytest.approx([60.0, 20.0, 110.0, 70.0])


def test_dlib_alignment_box_from_eye_and_mouth_centres():
    points = torch.zeros(68, 2, dtype=torch.float64)
    points[36:42] = torch.tensor([40.0, 50.0])  # left eye centre
    points[42:48] = torch.tensor([60.0, 50.0])  # right eye centre
    points[48:68] = torch.tensor([50.0, 95.0])  # mouth centre
    # eye–mouth distance sqrt(10² + 45²) = 46.10 → side floor(46.10 / 0.45) = 102; centre (50, 65)
    assert aligned_box(points, (200, 200)) == (0.0, 21.0, 102.0, 102.0)  # x = max(0, 50 − 51) = 0
    assert aligned_box(points, (80, 80)) == (0.0, 21.0, 80.0, 101.0)  # bounded as face-api bounds it
    points += 100
    assert aligned_box(points, (200, 200)) == (99.0, 121.0, 102.0, 102.0)
