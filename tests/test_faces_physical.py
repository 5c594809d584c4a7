"""Physical face attacks on synthetic faces and random-weight networks (no weights needed): a
targeted attack inside eyeglass frames moves the embedding toward the target and changes nothing
outside the frames; the scene around a face and the face's box follow the photo and the
transformations; the vanishing objective under transformations reduces to the plain one."""

from __future__ import annotations

import math

import torch
from torch import nn

import advrobust as ar
from advrobust.evaluation.vanish import vanish_success
from advrobust.faces.accessories import eyeglass_mask
from advrobust.faces.adapters import DIFFERENT, SAME, VanishClassifier, VerificationClassifier
from advrobust.faces.detection import TinyFaceDetector, TinyFaceDetectorNet
from advrobust.faces.physical import VanishUnderTransforms, face_scene, moved_boxes
from advrobust.transforms import Compose, Geometric, Identity
from test_faces_accessories import _face
from test_faces_models import _randomize


class _Embedder(nn.Module):
    """A small random network 3×150×150 → 128 (a stand-in for the recognizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=3), nn.ReLU(), nn.AdaptiveAvgPool2d(6), nn.Flatten(),
                                 nn.Linear(8 * 36, 128))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scale


def test_targeted_frames_move_the_embedding_toward_the_target_and_nothing_outside_them():
    face = _face((110, 140), (230, 140))
    mask = eyeglass_mask(face)
    embedder = _Embedder().eval()
    x = face.crop.unsqueeze(0)
    texture = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the target: the same face in other frames, scaled to lie at distance 1 > 0.6
        target = embedder(x * (1 - mask) + texture * mask)
        embedder.scale = 1 / float((embedder(x) - target).norm())
    model = VerificationClassifier(embedder, target * embedder.scale)
    with torch.no_grad():
        before = float(model.distance(x))
    assert before > 0.99
    attack = ar.attacks.PGD(ar.Masked(mask), steps=50, step_size=0.01)
    x_adv = attack(model, x, torch.tensor([DIFFERENT]), target=torch.tensor([SAME])).x_adv
    with torch.no_grad():
        after = float(model.distance(x_adv))
    assert after < 0.8 * before  # toward the target's embedding
    assert torch.equal(x_adv * (1 - mask), x * (1 - mask))  # bit for bit outside the frames
    assert float(((x_adv - x) * mask).abs().max()) > 0.1


def test_the_scene_shows_the_photo_around_the_face_and_maps_its_box():
    photo = torch.rand(3, 600, 800, generator=torch.Generator().manual_seed(0))
    face = _face((110, 140), (230, 140))
    face.box = (300.0, 200.0, 100.0, 100.0)
    scene = face_scene(photo, face, context=2.0, size=200)  # side 200 = size: no resampling
    assert scene.region == (250.0, 150.0, 200.0, 200.0)
    assert scene.box == (50.0, 50.0, 100.0, 100.0)
    assert torch.allclose(scene.image, photo[:, 150:350, 250:450], atol=1e-6)
    corner = face_scene(photo, _face((110, 140), (230, 140)), context=2.0, size=800)  # box 400 px at (0, 0)
    assert corner.region == (-200.0, -200.0, 800.0, 800.0)
    assert corner.image[:, :200].abs().max() == 0 and corner.image[:, :, :200].abs().max() == 0  # black beyond
    assert torch.allclose(corner.image[:, 200:, 200:], photo[:, :600, :600], atol=1e-6)
    # frames drawn in the scene sit where the crop's frames sit in the photo
    in_crop = eyeglass_mask(face, region=face.aligned, size=(150, 150))
    assert torch.equal(in_crop, eyeglass_mask(face))


def test_moved_boxes_follow_a_shift_and_a_zoom_exactly():
    size, box = (100, 200), (20.0, 30.0, 40.0, 20.0)
    shift = Geometric(translation=0.1)
    params = {"angle": torch.zeros(1), "scale": torch.ones(1), "shift": torch.tensor([[0.05, -0.1]]),
              "corners": torch.zeros(1, 4, 2)}
    moved = moved_boxes(shift, params, box, torch.zeros(1, 1, *size, dtype=torch.float64))
    assert torch.allclose(moved, torch.tensor([[30.0, 20.0, 40.0, 20.0]], dtype=torch.float64), atol=1e-4)
    zoom = Compose([Identity(), Geometric(scale=0.5)])
    params = [{}, {**params, "scale": torch.tensor([2.0]), "shift": torch.zeros(1, 2)}]
    # about the centre c = (100, 50): q ↦ c + 2(q − c)
    moved = moved_boxes(zoom, params, box, torch.zeros(1, 1, *size, dtype=torch.float64))
    assert torch.allclose(moved, torch.tensor([[-60.0, 10.0, 80.0, 40.0]], dtype=torch.float64), atol=1e-4)
    tilt = Geometric(rotation=15.0)
    params = {**params[1], "scale": torch.ones(1), "angle": torch.tensor([math.radians(15.0)])}
    moved = moved_boxes(tilt, params, box, torch.zeros(1, 1, *size))
    assert 0.9 * 40 < float(moved[0, 2]) < 1.1 * 40  # a tilted face keeps about its width


def _detector() -> TinyFaceDetector:
    return TinyFaceDetector(_randomize(TinyFaceDetectorNet(), seed=3), input_size=64).eval()


def test_vanishing_under_the_identity_is_the_plain_objective():
    detector = _detector()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    box = (8.0, 8.0, 40.0, 40.0)
    plain = VanishClassifier(detector, box, (64, 64))(images)
    under = VanishUnderTransforms(detector, box, (64, 64), Identity(), draws=3, kappa=1e6)(images)
    assert torch.allclose(plain, under, atol=1e-5)
    hinged = VanishUnderTransforms(detector, box, (64, 64), Identity(), draws=1, kappa=0.5)(images)
    assert torch.all(hinged[:, 0] >= -0.25 - 1e-6)  # a margin floored at −κ: logits (m/2, −m/2)


def test_an_untouched_image_vanishes_exactly_as_often_as_the_clean_one():
    detector = _detector()
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    result = vanish_success(detector, image, image.clone(), (8.0, 8.0, 40.0, 40.0), n_draws=6, batch_size=4)
    assert result.physical == result.baseline
    assert result.n_draws == 6 and 0.0 <= result.physical <= 1.0


def test_vanishing_against_strength_starts_at_the_digital_outcome():
    detector = _detector()
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    found = detector.detect(image, 0.3)[0].box  # a face the detector finds: it vanishes only when moved away
    for box, vanished in ((found, 0.0), ((0.0, 0.0, 6.0, 6.0), 1.0)):
        result = vanish_success(detector, image, image.clone(), box, n_draws=4, strengths=(0.0, 0.5, 1.0),
                                curve_draws=3, score_threshold=0.3)
        assert result.digital == vanished
        assert [s for s, _ in result.curve] == [0.0, 0.5, 1.0]
        assert result.curve[0][1] == vanished  # strength 0: every draw is the digital picture
        assert all(0.0 <= v <= 1.0 for _, v in result.curve)
