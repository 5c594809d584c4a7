"""Eyeglass frames on a face crop: the rims sit on the face's eyes, tilt with them, cover about what
Sharif et al.'s frames cover, and bound an attack to themselves."""

from __future__ import annotations

import math

import pytest
import torch

import advrobust as ar
from advrobust.faces.accessories import eyeglass_mask, eyes_in_crop
from advrobust.faces.pipeline import Face
from advrobust.masks import coverage


def _face(left: tuple[float, float], right: tuple[float, float], aligned=(10.0, 20.0, 300.0, 300.0)) -> Face:
    """A face whose crop is the 300×300 ``aligned`` box of its photo, read at 150×150, with its eyes
    (photo pixels) at ``left`` and ``right``."""
    landmarks = torch.zeros(68, 2)
    for part, (x, y) in ((slice(36, 42), left), (slice(42, 48), right)):
        ring = torch.linspace(0, 2 * math.pi, 7)[:6]
        landmarks[part] = torch.stack([x + 6 * ring.cos(), y + 3 * ring.sin()], dim=1)
    return Face("synthetic", (0.0, 0.0, 400.0, 400.0), 1.0, landmarks, aligned, torch.rand(3, 150, 150),
                torch.zeros(128))


def _at(mask: torch.Tensor, x: float, y: float) -> float:
    return float(mask[0, 0, round(y - 0.5), round(x - 0.5)])


def test_eyes_are_mapped_into_the_crop():
    face = _face((110, 140), (230, 140))  # crop pixels: (x - 10) / 2, (y - 20) / 2
    assert torch.allclose(eyes_in_crop(face), torch.tensor([[50.0, 60.0], [110.0, 60.0]], dtype=torch.float64))


def test_rims_surround_the_eyes_and_cover_about_a_twelfth_of_the_face():
    face = _face((110, 140), (230, 140))
    mask = eyeglass_mask(face)
    assert mask.shape == (1, 1, 150, 150)
    width = 60 / 0.4  # the frame is 2.5x the eye distance
    for cx in (50.0, 110.0):
        assert _at(mask, cx, 60) == 0  # the eye itself is seen through the glass
        assert _at(mask, cx - 0.15 * width, 60) == _at(mask, cx + 0.15 * width, 60) == 1  # the rim
    assert _at(mask, 80, 130) == 0  # nothing on the mouth
    assert 0.04 < coverage(mask) < 0.10


def test_frames_tilt_with_the_eye_line():
    angle = math.radians(25)
    centre, half = torch.tensor([80.0, 70.0]), 30.0
    along = torch.tensor([math.cos(angle), math.sin(angle)])
    left, right = centre - half * along, centre + half * along
    face = _face(tuple((left * 2 + torch.tensor([10.0, 20.0])).tolist()),
                 tuple((right * 2 + torch.tensor([10.0, 20.0])).tolist()))
    mask = eyeglass_mask(face)
    rim = 0.15 * (2 * half / 0.4)
    for eye in (left, right):
        assert _at(mask, *eye.tolist()) == 0
        for side in (-1, 1):
            x, y = (eye + side * rim * along).tolist()
            assert _at(mask, x, y) == 1, (eye, side)


def test_an_attack_on_the_frames_changes_nothing_outside_them():
    face = _face((110, 140), (230, 140))
    mask = eyeglass_mask(face)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 150 * 150, 2))
    x = face.crop.unsqueeze(0)
    y = model(x).argmax(1)
    x_adv = ar.attacks.PGD(ar.Masked(mask), steps=5)(model, x, y).x_adv
    assert torch.equal(x_adv * (1 - mask), x * (1 - mask))
    assert float((x_adv - x).abs().max()) > 0


def test_eyes_in_one_place_are_a_one_line_error():
    with pytest.raises(ar.InputError, match="eyes are 0 pixels apart"):
        eyeglass_mask(_face((110, 140), (110, 140)))


def _tilted_face(degrees: float = 20.0) -> tuple[Face, torch.Tensor, torch.Tensor]:
    """A face whose eye line is tilted, its eyes 40 crop pixels apart around (75, 70)."""
    angle = math.radians(degrees)
    centre, along = torch.tensor([75.0, 70.0]), torch.tensor([math.cos(angle), math.sin(angle)])
    left, right = centre - 20 * along, centre + 20 * along
    to_photo = torch.tensor([10.0, 20.0])
    return _face(tuple((left * 2 + to_photo).tolist()), tuple((right * 2 + to_photo).tolist())), left, right


def test_printable_frames_are_level_cut_out_and_sized_to_the_eyes():
    from advrobust.faces.accessories import printable_frames

    face, _, _ = _tilted_face(20.0)
    mask = eyeglass_mask(face)
    colour = torch.tensor([0.9, 0.2, 0.4])
    image = torch.where(mask[0].bool(), colour[:, None, None], torch.tensor(0.5))  # frames in one colour
    frames = printable_frames(face, image, mask)
    assert frames.rgb.shape[0] == 3 and frames.rgb.shape[1:] == frames.alpha.shape
    assert abs(float(frames.alpha.sum()) / float(mask.sum()) - 1) < 0.1  # the same frames, resampled
    assert torch.equal(frames.rgb * (1 - frames.alpha), torch.zeros_like(frames.rgb))  # nothing printed around
    inside = frames.rgb[:, frames.alpha.bool()]
    assert torch.allclose(inside.median(dim=1).values, colour, atol=0.02)  # the frames' own colours
    # level: a frame is symmetric left to right once its eye line is horizontal (the tilted mask is not)
    mirrored = frames.alpha.flip(-1)
    assert float((frames.alpha * mirrored).sum() / frames.alpha.sum()) > 0.85
    # the rims' centres 63 mm apart: the frames, temples included, are 2.5 eye distances wide
    assert abs(frames.width_mm - 2.5 * 63) < 2 * 63 / 40 + 1e-6
    assert frames.alpha[0].any() and frames.alpha[-1].any() and frames.alpha[:, 0].any()  # cut to the frames
    assert abs(printable_frames(face, image, mask, eye_distance_mm=70).width_mm / frames.width_mm - 70 / 63) < 1e-9
    with pytest.raises(ar.InputError, match="must both be 150×150"):
        printable_frames(face, image[:, :100], mask)
    with pytest.raises(ar.InputError, match="eye_distance_mm"):
        printable_frames(face, image, mask, eye_distance_mm=0)
