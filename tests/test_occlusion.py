"""The rectangular occlusion attack (ROA, Wu et al. 2020) and DOA training."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.occlusion import ROA, rectangle_masks
from advrobust.errors import InputError
from advrobust.training import create_method, fit

REGION = (slice(4, 7), slice(5, 8))  # a 3×3 region at row 4, column 5


class PlantedRegion(nn.Module):
    """Class 1 iff the 3×3 region's pixels sum to more than 8.1 (all near white), else class 0:
    only a 3×3 rectangle placed exactly on the region, painted white, breaks a dark image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0, REGION[0], REGION[1]].sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(s), s - 8.1], dim=1)


def _support(r: torch.Tensor) -> torch.Tensor:
    return (r != 0).any(dim=1)  # N×H×W: pixels changed


@pytest.mark.parametrize("search", ["gradient", "exhaustive"])
def test_roa_finds_the_only_rectangle_that_works(search: str) -> None:
    x = torch.rand(3, 1, 12, 12) * 0.2
    res = ROA(size=3, search=search, steps=10, step_size=0.1)(PlantedRegion(), x, torch.zeros(3, dtype=torch.long))
    assert res.success.all()
    changed = _support(res.x_adv - x)
    planted = torch.zeros(12, 12, dtype=torch.bool)
    planted[REGION] = True
    assert (changed == planted).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1 and (res.norm <= 9).all()


def test_roa_changes_one_rectangle_only_and_respects_the_box() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 5))
    x, y = torch.rand(8, 3, 12, 12), torch.randint(0, 5, (8,))
    res = ROA(size=(2, 4), steps=5)(model, x, y)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    for changed in _support(res.x_adv - x):
        rows, cols = changed.nonzero(as_tuple=True)
        if rows.numel():
            assert int(rows.max() - rows.min()) < 2 and int(cols.max() - cols.min()) < 4
    clean = model(x).argmax(1) != y
    assert (res.success >= clean).all()  # a point misclassified at r = 0 stays a success


def test_roa_targeted_hits_the_target_and_registry() -> None:
    x = torch.rand(2, 1, 12, 12) * 0.2
    y, t = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    res = ar.attacks.create("roa", eps=9, steps=10)(PlantedRegion(), x, y, target=t)
    assert res.success.all() and (PlantedRegion()(res.x_adv).argmax(1) == t).all()
    assert ar.attacks.ROA is ROA and (ROA().height, ROA().width) == (5, 5)
    with pytest.raises(InputError, match="square"):
        ar.attacks.create("roa", eps=10)
    with pytest.raises(InputError, match="fit"):
        ROA(size=13)(PlantedRegion(), x, y)


def test_roa_in_a_sweep_shrinks_to_the_budget() -> None:
    roa = ROA(size=(3, 4))
    assert (roa.with_threat(ar.L0(eps=20)).height, roa.with_threat(ar.L0(eps=20)).width) == (3, 4)
    small = roa.with_threat(ar.L0(eps=10))
    assert (small.height, small.width) == (3, 3) and (roa.height, roa.width) == (3, 4)
    x = torch.rand(2, 1, 12, 12) * 0.2
    sweep = ROA(size=3, steps=10).sweep(PlantedRegion(), x, torch.zeros(2, dtype=torch.long), [4, 9])
    assert not sweep.success[0].any() and sweep.success[1].all()  # a 2×2 square cannot cover the 3×3 region


def test_rectangle_masks() -> None:
    masks = rectangle_masks((4, 5), (2, 3), torch.tensor([[0, 0], [2, 2]]))
    assert masks.shape == (2, 1, 4, 5) and masks.sum().item() == 12
    assert masks[1, 0, 2:, 2:].all() and not masks[1, 0, :2].any()


def test_doa_trains_on_occluded_images() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=g)
    x = torch.rand(64, 1, 8, 8, generator=g) * 0.3
    x[y == 1, :, :, :4] += 0.6
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    torch.manual_seed(0)
    history = fit(model, SimpleNamespace(x=x, y=y), method="doa", epochs=1, batch_size=32, lr=0.1, device="cpu")
    assert len(history) == 1 and math.isfinite(history.last.train_loss)
    assert create_method("doa", size=3, steps=2).describe()["size"] == [3, 3]
