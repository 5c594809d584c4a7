"""The ported face models against the ORIGINAL face-api's outputs, and one real attack.

tests/fixtures/faces/golden.json was made by tests/fixtures/faces/make_golden.py, which runs face-api
1.7.15 in node on TF.js's pure-JavaScript backend. Skipped (with the reason) when the weights are
not in the cache: `advrobust data download faces` fetches them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import advrobust as ar
from advrobust.faces import FacePipeline, VanishClassifier, VerificationClassifier, crop_face, is_available, load_image
from advrobust.faces.adapters import DIFFERENT, PRESENT, SAME
from advrobust.faces.detection import box_iou
from advrobust.faces.weights import demo_photo_paths

GOLDEN = Path(__file__).parent / "fixtures" / "faces" / "golden.json"

pytestmark = pytest.mark.skipif(
    not is_available(), reason="face weights not in the cache: run `advrobust data download faces` (needs npm)"
)


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline.load()


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_detections_landmarks_and_descriptors_match_the_original(pipeline, golden):
    assert golden["versions"]["face_api"] == "1.7.15" and golden["input_size"] == pipeline.detector.input_size
    total = 0
    for expected, path in zip(golden["images"], demo_photo_paths(), strict=True):
        assert expected["name"] == path.name
        image = load_image(path)
        found = pipeline.find(image, path.name)
        assert len(found) == len(expected["faces"]), path.name
        for want, face in zip(expected["faces"], found, strict=True):
            assert box_iou(torch.tensor(want["box"]), torch.tensor(face.box)).item() >= 0.95
            assert abs(want["score"] - face.score) <= 1e-3
            assert (face.landmarks - torch.tensor(want["landmarks"], dtype=torch.float64)).abs().max().item() <= 0.05
            assert box_iou(torch.tensor(want["aligned"]), torch.tensor(face.aligned)).item() >= 0.95
        # descriptors of the original's aligned crops (so an upstream difference cannot hide in them)
        crops = torch.cat([crop_face(image, want["aligned"]) for want in expected["faces"]])
        original = torch.tensor([want["descriptor"] for want in expected["faces"]])
        assert (pipeline.describe(crops) - original).abs().max().item() <= 1e-3, path.name
        ours = torch.stack([face.descriptor for face in found])  # the whole pipeline, end to end
        assert (ours - original).abs().max().item() <= 1e-3, path.name
        total += len(found)
    assert total == 20


def test_dodging_and_vanishing_succeed_on_a_real_face(pipeline):
    image = load_image(demo_photo_paths()[1])  # sample2.jpg: one face
    face = pipeline.find(image)[0]
    model = VerificationClassifier(pipeline.recognizer, face.descriptor)
    attack = ar.attacks.PGD(ar.Linf(eps=4 / 255), steps=20, step_size=1 / 255)
    result = attack(model, face.crop.unsqueeze(0), torch.tensor([SAME]))
    assert result.success.item()
    assert (result.x_adv - face.crop).abs().max().item() <= 4 / 255 + 1e-6
    assert model.distance(result.x_adv).item() >= 0.6
    # the face disappears from the detector's output: confirmed with the full detection procedure
    vanish = VanishClassifier(pipeline.detector, face.box, tuple(image.shape[-2:]))
    attack = ar.attacks.PGD(ar.Linf(eps=8 / 255), steps=20, step_size=2 / 255)
    result = attack(vanish, image.unsqueeze(0), torch.tensor([PRESENT]))
    assert result.success.item()
    left = pipeline.detector.detect(result.x_adv[0])
    assert all(box_iou(torch.tensor(d.box), torch.tensor(face.box)).item() < 0.5 for d in left)


def test_impersonation_and_other_norms(pipeline):
    first = pipeline.best_face(demo_photo_paths()[3])  # sample4.jpg
    second = pipeline.best_face(demo_photo_paths()[5])  # sample6.jpg: a different person
    model = VerificationClassifier(pipeline.recognizer, second.descriptor)
    assert model.distance(first.crop.unsqueeze(0)).item() >= 0.6
    attack = ar.attacks.PGD(ar.Linf(eps=8 / 255), steps=20, step_size=2 / 255)
    result = attack(model, first.crop.unsqueeze(0), torch.tensor([DIFFERENT]), target=torch.tensor([SAME]))
    assert result.success.item() and model.distance(result.x_adv).item() < 0.6
    # dodging under l2 (APGD) and with MI-FGSM: the same adapter, any attack
    own = VerificationClassifier(pipeline.recognizer, first.descriptor)
    for attack in (ar.attacks.create("apgd", threat=ar.L2(eps=1.0), steps=20),
                   ar.attacks.MIFGSM(ar.Linf(eps=4 / 255), steps=20, step_size=1 / 255)):
        result = attack(own, first.crop.unsqueeze(0), torch.tensor([SAME]))
        assert result.success.item() and result.norm.item() <= attack.threat.eps + 1e-5
        assert own.distance(result.x_adv).item() >= 0.6
