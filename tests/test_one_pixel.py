"""One-Pixel attack (Su et al. 2019): exactly k pixels, confirmed successes, planted pixels, targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.base import Oracle
from advrobust.attacks.one_pixel import OnePixel, _distinct_parents, one_pixel_all_targets
from advrobust.errors import InputError, ModelAccessError
from advrobust.models.blackbox import LabelModel, ScoreModel


class PixelTrigger(nn.Module):
    """``z_0 = 0``; ``z_c = 10·(mean_channels x[r_c, c_c] − 0.5)``: class ``c ≥ 1`` wins exactly
    when its own pixel is brighter than 0.5 (and brighter than the other triggers); every other
    pixel is irrelevant."""

    def __init__(self, pixels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pixels = pixels
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(dim=1)
        triggers = [self.scale * (g[:, r, c] - 0.5) for r, c in self.pixels]
        return torch.stack([torch.zeros_like(triggers[0]), *triggers], dim=1)


def _dark(n: int, c: int = 1, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Images with continuous values in (0.05, 0.3): class 0 of :class:`PixelTrigger`."""
    gen = torch.Generator().manual_seed(seed)
    return 0.05 + 0.25 * torch.rand(n, c, size, size, generator=gen)


def _changed_pixels(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``N×H×W``: which pixels differ in any channel."""
    return (x_adv != x).any(dim=1)


@pytest.mark.parametrize(("k", "channels"), [(1, 1), (3, 1), (2, 3)])
def test_changes_exactly_k_pixels_and_nothing_else(k, channels):
    model = PixelTrigger([(3, 5)])
    x = _dark(6, channels, seed=k)
    y = torch.zeros(6, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=k), population=20, generations=3)(model, x, y)
    # continuous clean values never equal a candidate's, and colliding pixels are repaired: exactly k
    changed = _changed_pixels(res.x_adv, x)
    assert changed.flatten(1).sum(dim=1).tolist() == [k] * 6
    assert res.norm.tolist() == [float(k)] * 6
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1


def test_finds_the_planted_pixel():
    model = PixelTrigger([(3, 5)])
    x, y = _dark(8), torch.zeros(8, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=1), population=60, generations=30)(model, x, y)
    assert bool(res.success.all())
    changed = _changed_pixels(res.x_adv, x)
    assert bool(changed[:, 3, 5].all()) and changed.flatten(1).sum(dim=1).tolist() == [1] * 8
    # confirmed: the model itself labels every reported success differently
    assert bool((model(res.x_adv).argmax(dim=1) != y).all())
    # early stop: the budget 60 × 31 is rarely spent, and never exceeded (+1: the clean query)
    assert bool((res.queries <= 1 + 60 * 31).all())
    assert float(res.queries.float().mean()) < 60 * 31


def test_targeted_hits_its_target_and_all_targets():
    pixels = [(1, 1), (3, 5), (6, 2)]
    model = PixelTrigger(pixels)
    x, y = _dark(4), torch.zeros(4, dtype=torch.long)
    target = torch.tensor([1, 2, 3, 2])
    res = OnePixel(ar.L0(pixels=1), population=60, generations=40)(model, x, y, target)
    assert bool(res.success.all())
    assert torch.equal(model(res.x_adv).argmax(dim=1), target)
    for i, t in enumerate(target.tolist()):
        r, c = pixels[t - 1]
        assert bool(_changed_pixels(res.x_adv, x)[i, r, c])

    every = one_pixel_all_targets(model, x[:2], y[:2], population=60, generations=40)
    assert every.targets.tolist() == [[1, 2, 3], [1, 2, 3]]
    assert bool(every.success.all())
    for t in (1, 2, 3):
        sub = every.for_target(t)
        assert len(sub) == 2 and torch.equal(model(sub.x_adv).argmax(dim=1), torch.full((2,), t))


def test_failures_are_not_reported_as_successes():
    """A model no pixel can fool: every point fails, within the budget, with at most one pixel changed."""

    class Unfoolable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = x.flatten(1).mean(dim=1)
            return torch.stack([1.0 + s, s], dim=1)  # class 0 always wins by 1; its margin still varies

    x, y = _dark(3), torch.zeros(3, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=1), population=10, generations=5)(Unfoolable(), x, y)
    assert not bool(res.success.any())
    assert bool((res.queries <= 1 + 10 * 6).all()) and bool((res.queries > 1 + 10).all())
    assert bool((res.norm <= 1).all())


def test_deterministic_for_a_seed(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:4], mnist_batch[1][:4]
    attack = OnePixel(ar.L0(pixels=1), population=16, generations=4, seed=7)
    a, b = attack(small_cnn, x, y), attack(small_cnn, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    c = OnePixel(ar.L0(pixels=1), population=16, generations=4, seed=8)(small_cnn, x, y)
    assert not torch.equal(a.x_adv, c.x_adv)
    # the result does not depend on how candidates are split into forward passes
    d = OnePixel(ar.L0(pixels=1), population=16, generations=4, seed=7, max_batch=7)(small_cnn, x, y)
    assert torch.equal(a.x_adv, d.x_adv)
    assert bool((a.norm <= 1).all())


def test_queries_are_counted_honestly_on_a_black_box():
    net = PixelTrigger([(3, 5)])
    box = ScoreModel(net)
    x, y = _dark(5), torch.zeros(5, dtype=torch.long)
    res = OnePixel(ar.L0(pixels=1), population=12, generations=6)(box, x, y)
    # every row the black box evaluated is a counted query, but the final confirmation pass
    assert box.queries == int(res.queries.sum()) + len(x)
    with pytest.raises(ModelAccessError):
        OnePixel(ar.L0(pixels=1))(LabelModel(net), x, y)


def test_distinct_parents():
    gen = torch.Generator().manual_seed(0)
    r = _distinct_parents(3, 5, gen, torch.device("cpu"))
    own = torch.arange(5).view(1, 5, 1)
    assert not bool((r == own).any())
    assert bool((r.sort(dim=2).values.diff(dim=2) > 0).all())


def test_bad_configuration_fails_early():
    with pytest.raises(InputError):
        OnePixel(ar.Linf(eps=0.1))
    with pytest.raises(InputError):
        OnePixel(ar.L0(pixels=1), population=3)
    with pytest.raises(InputError):
        OnePixel(ar.L0(pixels=1, per_feature=True))
    oracle = Oracle(PixelTrigger([(0, 0)]), 1, torch.device("cpu"))
    with pytest.raises(InputError):
        OnePixel(ar.L0(pixels=65))._run(oracle, _dark(1), torch.zeros(1, dtype=torch.long), None,
                                       torch.Generator(), torch.zeros(1, dtype=torch.bool))


def test_two_pixel_lock_needs_two_pixels():
    """Class 1 wins only when pixels (1, 1) and (6, 6) sum above 1.5: with clean pixels below 0.3,
    k = 1 must fail on every point and k = 2 can succeed; a sweep over the budget reports exactly that."""

    class TwoPixelLock(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            both = x[:, 0, 1, 1] + x[:, 0, 6, 6]
            return torch.stack([torch.zeros_like(both), 10 * (both - 1.5)], dim=1)

    model, x, y = TwoPixelLock(), _dark(4), torch.zeros(4, dtype=torch.long)
    attack = OnePixel(ar.L0(pixels=1), population=60, generations=40)
    sweep = attack.sweep(model, x, y, [1, 2])
    assert not bool(sweep.success[0].any())
    assert bool(sweep.success[1].any())  # DE searches coordinates coarsely: not every point in 60 × 40
    assert bool((sweep.success[1] >= sweep.success[0]).all())
