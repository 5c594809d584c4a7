"""Attack objectives: signs, targeted forms, invariances."""

from __future__ import annotations

import pytest
import torch

from advrobust.errors import InputError
from advrobust.losses import cross_entropy, dlr, get_loss, is_adversarial, margin


def test_margin_is_positive_exactly_when_adversarial():
    z = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 5, (200,), generator=torch.Generator().manual_seed(1))
    t = (y + 1) % 5
    assert torch.equal(margin(z, y) > 0, is_adversarial(z, y))
    assert torch.equal(margin(z, y, t) > 0, is_adversarial(z, y, t))


def test_margin_kappa_caps_the_reward():
    z = torch.tensor([[0.0, 10.0, 0.0]])
    assert margin(z, torch.tensor([0]), kappa=2.0).item() == 2.0


def test_targeted_cross_entropy_is_minus_ce_of_target():
    z = torch.tensor([[1.0, 2.0, 3.0]])
    y, t = torch.tensor([0]), torch.tensor([2])
    assert cross_entropy(z, y, t).item() == pytest.approx(-torch.nn.functional.cross_entropy(z, t).item())


def test_dlr_is_shift_and_scale_invariant():
    z = torch.randn(10, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(10) % 6
    t = (y + 2) % 6
    for target in (None, t):
        assert torch.allclose(dlr(z, y, target), dlr(3.0 * z + 7.0, y, target), atol=1e-5)


def test_dlr_needs_enough_classes():
    with pytest.raises(InputError, match="at least 3"):
        dlr(torch.randn(2, 2), torch.tensor([0, 1]))


def test_loss_names():
    assert get_loss("CE") is cross_entropy and get_loss("cw") is margin
    with pytest.raises(InputError, match="unknown loss"):
        get_loss("hinge2")
