"""RP2's sticker mask: where a sparse universal perturbation is largest, inside the allowed surface."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advrobust.attacks.patch import UniversalMask
from advrobust.attacks.sticker_mask import sticker_mask
from advrobust.errors import InputError
from advrobust.evaluation.physical import texture_success
from advrobust.transforms import Identity

SIDE = 8


class PixelVote(nn.Module):
    """A linear classifier of ``SIDE×SIDE`` images whose class 1 is read from the pixels in ``votes``
    alone (class 0's logit is a constant): only those pixels have any gradient."""

    def __init__(self, votes: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(votes.flatten().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one = x.flatten(1) @ self.weight - float(self.weight.sum()) * 0.6
        return torch.stack([torch.zeros_like(one), one], dim=1)


def _votes() -> torch.Tensor:
    votes = torch.zeros(SIDE, SIDE)
    votes[2:6, 1:3] = 1.0  # 8 pixels on the left
    votes[0:2, 5:8] = 1.0  # 6 pixels on the right
    return votes


def _images(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.1
    return x, torch.zeros(n, dtype=torch.long)


def test_the_mask_lies_where_the_model_can_be_moved_and_inside_the_allowed_surface():
    model, votes = PixelVote(_votes()), _votes().bool()
    x, y = _images()
    mask = sticker_mask(model, x, y, target=1, area=6 / SIDE**2, steps=40, batch_size=8)
    assert mask.shape == (1, 1, SIDE, SIDE) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert int(mask.sum()) == 6 and bool(votes[mask[0, 0].bool()].all())
    left = torch.zeros(SIDE, SIDE)
    left[:, :4] = 1
    inside = sticker_mask(model, x, y, target=1, area=6 / SIDE**2, within=left, steps=40, batch_size=8)
    assert int(inside.sum()) == 6 and bool((votes & left.bool())[inside[0, 0].bool()].all())
    # the same seed, the same mask; the model's weights are left as they were
    assert torch.equal(mask, sticker_mask(model, x, y, target=1, area=6 / SIDE**2, steps=40, batch_size=8))
    assert model.weight.grad is None and model.weight.requires_grad


def test_a_texture_in_the_found_mask_beats_a_random_texture_in_it():
    model = PixelVote(_votes())
    x, y = _images(64)
    mask = sticker_mask(model, x, y, target=1, area=8 / SIDE**2, steps=40, batch_size=16)
    sticker = UniversalMask(mask, transform=Identity(), steps=40, batch_size=16, lr=0.1).fit(model, x, y, target=1)
    found = texture_success(model, sticker, x, y, transform=Identity(), n_draws=1)
    sticker.texture = torch.zeros_like(sticker.texture)  # black: the opposite of what class 1 needs
    dark = texture_success(model, sticker, x, y, transform=Identity(), n_draws=1)
    assert found.digital == 1.0 and dark.digital == 0.0


class PixelVoteSegmenter(PixelVote):
    """:class:`PixelVote`'s two scores given to every pixel: a segmenter whose whole map follows the
    vote of the pixels in ``votes``."""

    task = "segmentation"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, :, None, None].expand(-1, -1, *x.shape[-2:])


def test_a_segmenters_sticker_lies_where_its_pixels_can_be_moved():
    from advrobust.transforms import Geometric

    model, votes = PixelVoteSegmenter(_votes()), _votes().bool()
    x, _ = _images()
    y = torch.zeros(x.shape[0], SIDE, SIDE, dtype=torch.long)  # every pixel background
    mask = sticker_mask(model, x, y, target=1, area=6 / SIDE**2, steps=40, batch_size=8)
    assert int(mask.sum()) == 6 and bool(votes[mask[0, 0].bool()].all())
    # labels that follow a pose change (pixels moved in from outside are ignored) leave the answer alone
    moved = sticker_mask(model, x, y, target=1, area=6 / SIDE**2, steps=40, batch_size=8,
                         transform=Geometric(translation=0.1))
    assert int(moved.sum()) == 6 and float(votes[moved[0, 0].bool()].float().mean()) >= 5 / 6


@pytest.mark.parametrize("kwargs, message", [
    ({"area": 0.5, "within": torch.eye(SIDE)}, "the allowed surface has 8"),
    ({"area": 0.0}, "area 0 is 0 pixels"),
    ({"target": 0}, "every training image is already of the target class 0"),
    ({"target": 5}, r"target holds class indices outside \[0, 1\] for a model with 2 classes"),
    ({"within": torch.full((SIDE, SIDE), 0.5)}, "within is not binary"),
])
def test_bad_requests_are_one_line_errors(kwargs, message):
    x, y = _images(4)
    with pytest.raises(InputError, match=message):
        sticker_mask(PixelVote(_votes()), x, y, **{"target": 1, "steps": 1, **kwargs})
