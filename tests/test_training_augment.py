"""Random translations of training batches (advrobust.training.augment) and their use by fit."""

from __future__ import annotations

import pytest
import torch

from advrobust.data import load
from advrobust.errors import InputError
from advrobust.models import create
from advrobust.training import fit
from advrobust.training.augment import random_shift
from advrobust.training.recipes import Optimization


def _translated(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (C×H×W) moved down by ``dy`` and right by ``dx``, zeros where nothing moved in."""
    out = torch.zeros_like(image)
    h, w = image.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_each_image_is_its_own_zero_filled_translation_within_the_range():
    x = torch.rand(64, 3, 9, 11)
    k = 2
    shifted = random_shift(x, k, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    found = set()
    for image, out in zip(x, shifted, strict=True):
        matches = [(dy, dx) for dy in range(-k, k + 1) for dx in range(-k, k + 1)
                   if torch.equal(_translated(image, dy, dx), out)]
        assert len(matches) == 1  # random values: exactly one offset explains the output
        found.add(matches[0])
    assert len(found) > 10  # offsets drawn per image, spread over the 25 possible ones


def test_seeded_offsets_repeat_and_zero_is_the_identity():
    x = torch.rand(8, 1, 28, 28)
    a = random_shift(x, 3, torch.Generator().manual_seed(5))
    assert torch.equal(a, random_shift(x, 3, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, random_shift(x, 3, torch.Generator().manual_seed(6)))
    assert random_shift(x, 0) is x


def test_bad_shifts_are_one_line_errors():
    with pytest.raises(InputError, match="between 0 and the image's side"):
        random_shift(torch.rand(2, 1, 5, 5), 5)
    with pytest.raises(InputError, match="shift must be >= 0"):
        Optimization(shift=-1)


def test_fit_trains_on_shifted_batches_deterministically():
    train = load("mnist-5k", split="train").subset(256, seed=0)

    def weights(**options):
        model = create("mnist-cnn", 10, (1, 28, 28), seed=0, width=8)
        history = fit(model, train, epochs=1, batch_size=64, **options)
        return history, torch.cat([p.flatten() for p in model.parameters()])

    history, shifted = weights(shift=2)
    assert history.config["shift"] == 2
    assert torch.equal(shifted, weights(shift=2)[1])  # the offsets come from the run's seed
    assert not torch.equal(shifted, weights()[1])  # and they change what is learned
