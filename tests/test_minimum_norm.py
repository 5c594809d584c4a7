"""Minimum-norm attacks (L-BFGS-B, C&W, DeepFool, JSMA, FMN): closed forms on affine models and the contract.

On an affine model ``z = Wx + b`` the misclassified region is the union of the half-spaces
``z_j ≥ z_y``, so (for a point far from the faces of the box) the minimal perturbation is the distance
to the nearest hyperplane: ``min_{j≠y} (z_y − z_j) / ‖w_y − w_j‖_q`` with ``q`` the dual norm. No
attack may report less; DeepFool reaches it in one step (up to its overshoot); on a *binary* model
(where the problem is convex) C&W, L-BFGS-B and FMN must reach it too.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.base import MinimumNormAttack
from advrobust.attacks.cw import CarliniWagner
from advrobust.attacks.deepfool import DeepFool
from advrobust.attacks.fmn import FMN
from advrobust.attacks.jsma import JSMA
from advrobust.attacks.lbfgs import LBFGS
from advrobust.errors import InputError
from advrobust.threat import threat_from_name
from conftest import Linear

DUAL = {"l2": 2.0, "linf": 1.0, "l1": math.inf}


def affine(classes: int, seed: int = 1234) -> Linear:
    gen = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(classes, 16, generator=gen), torch.randn(classes, generator=gen) * 0.1, (1, 4, 4))


def points(model: Linear, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs near the centre of the box, labelled with the model's own prediction."""
    gen = torch.Generator().manual_seed(0)
    x = (0.5 + 0.05 * torch.randn(n, 1, 4, 4, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        return x, model(x).argmax(dim=1)


def closed_form(model: Linear, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """Distance to the nearest decision hyperplane in ``norm`` (valid when the box is not reached)."""
    with torch.no_grad():
        z = model(x)
        w = model.weight
        gap = z.gather(1, y[:, None]) - z
        dw = (w[y][:, None, :] - w[None, :, :]).norm(p=DUAL[norm], dim=2)
        dist = gap / dw
        dist[torch.arange(len(y)), y] = math.inf
        return dist.min(dim=1).values


def assert_box_not_binding(model: Linear, x: torch.Tensor, y: torch.Tensor) -> None:
    """The l∞ closed-form distance is the largest coordinate change; keep it far from the faces."""
    assert float(closed_form(model, x, y, "linf").max()) < float(torch.minimum(x, 1 - x).min())


def check_contract(model, x, y, res, threat, target=None) -> None:
    """Successes re-classify as claimed, lie in the box, report their measured norm; failures: inf and x."""
    with torch.no_grad():
        pred = model(res.x_adv).argmax(dim=1)
    s = res.success
    if target is None:
        assert bool((pred[s] != y[s]).all())
    else:
        assert bool((pred[s] == target[s]).all())
    assert bool(((res.x_adv >= 0) & (res.x_adv <= 1)).all())
    measured = threat.norm(res.x_adv - x)
    assert torch.allclose(res.norm[s], measured[s], rtol=1e-5, atol=1e-6)
    assert bool(torch.isinf(res.norm[~s]).all())
    assert torch.equal(res.x_adv[~s], x[~s])


ATTACKS = {
    "lbfgs": lambda: LBFGS(search_steps=6, max_iter=50),
    "cw": lambda: CarliniWagner.fast(steps=50, search_steps=5),
    "deepfool-l2": lambda: DeepFool(ar.L2()),
    "deepfool-linf": lambda: DeepFool(ar.Linf()),
    "jsma": lambda: JSMA(gamma=0.5),
    "fmn-l0": lambda: FMN(ar.L0(), steps=30),
    "fmn-l1": lambda: FMN(ar.L1(), steps=30),
    "fmn-l2": lambda: FMN(ar.L2(), steps=30),
    "fmn-linf": lambda: FMN(ar.Linf(), steps=30),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_contract_and_lower_bound_on_a_multiclass_affine_model(name):
    model = affine(3)
    x, y = points(model, 16)
    attack = ATTACKS[name]()
    res = attack(model, x, y)
    check_contract(model, x, y, res, attack.threat)
    assert res.success_rate >= 0.9
    if attack.threat.name in DUAL:  # nobody beats the true minimum
        d = closed_form(model, x, y, attack.threat.name)
        assert bool((res.norm >= d * (1 - 1e-3)).all())
    assert bool((res.queries > 0).all())


@pytest.mark.parametrize("name", ["lbfgs", "cw", "deepfool-l2", "jsma", "fmn-l2", "fmn-linf"])
def test_targeted_hits_the_target(name):
    model = affine(3)
    x, y = points(model, 16)
    target = (y + 1) % 3
    attack = ATTACKS[name]()
    res = attack(model, x, y, target=target)
    check_contract(model, x, y, res, attack.threat, target)
    assert res.success_rate >= 0.9


def test_minimum_norm_attacks_are_registered():
    for name, cls in [("lbfgs", LBFGS), ("cw", CarliniWagner), ("deepfool", DeepFool), ("jsma", JSMA), ("fmn", FMN)]:
        attack = ar.attacks.create(name)
        assert isinstance(attack, cls) and isinstance(attack, MinimumNormAttack) and not attack.threat.bounded


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_deepfool_reaches_the_nearest_hyperplane_of_a_multiclass_model(norm):
    model = affine(3)
    x, y = points(model, 32)
    assert_box_not_binding(model, x, y)
    d = closed_form(model, x, y, norm)
    threat = threat_from_name(norm)
    exact = DeepFool(threat, overshoot=0.0)(model, x, y)
    # one linear step: d + 1e-4 / ‖w_y − w_l‖_q (the authors' floor on the step), times 1 + overshoot
    assert bool(exact.success.all())
    assert torch.allclose(exact.norm, d, rtol=1e-3, atol=1e-4)
    default = DeepFool(threat)(model, x, y)
    assert torch.allclose(default.norm, d * 1.02, rtol=1e-3, atol=1e-4)


def test_deepfool_stops_each_point_once_fooled():
    model = affine(3)
    x, y = points(model, 16)
    res = DeepFool(candidates=3)(model, x, y)
    # the base's clean check and DeepFool's ranking of the classes, then 2 candidate gradients per
    # iteration: an affine model needs one step and one more evaluation to see the flip
    assert bool((res.queries == 2 + 2 * 2).all())


@pytest.mark.parametrize(
    "make, rtol",
    [
        (lambda: CarliniWagner(), 0.01),  # the authors' defaults
        (lambda: CarliniWagner.fast(), 0.05),
        (lambda: LBFGS(), 0.03),
        (lambda: FMN(ar.L2()), 0.01),
    ],
)
def test_l2_attacks_reach_the_closed_form_on_a_binary_affine_model(make, rtol):
    model = affine(2)
    x, y = points(model, 48)
    d = closed_form(model, x, y, "l2")
    keep = d > 0.05  # C&W's Adam moves w by ~lr a step: too coarse for distances near 0.01
    x, y, d = x[keep][:12], y[keep][:12], d[keep][:12]
    assert len(d) == 12
    assert_box_not_binding(model, x, y)
    res = make()(model, x, y)
    assert bool(res.success.all())
    assert bool((res.norm >= d * (1 - 1e-3)).all())
    assert bool((res.norm <= d * (1 + rtol)).all())


@pytest.mark.parametrize("norm", ["l1", "linf"])
def test_fmn_reaches_the_closed_form_in_l1_and_linf(norm):
    model = affine(2)
    x, y = points(model, 24)
    assert_box_not_binding(model, x, y)
    d = closed_form(model, x, y, norm)
    res = FMN(threat_from_name(norm))(model, x, y)
    assert bool(res.success.all())
    assert torch.allclose(res.norm, d, rtol=0.01)


def test_cw_keeps_the_smallest_success_across_searches():
    model = affine(2)
    x, y = points(model, 12)
    short = CarliniWagner.fast(search_steps=1)(model, x, y)
    long = CarliniWagner.fast(search_steps=6)(model, x, y)
    both = short.success & long.success
    assert bool((long.norm[both] <= short.norm[both] * (1 + 1e-6)).all())
    assert bool(long.success[short.success].all())


def test_jsma_changes_at_most_its_budget_and_hits_the_target(small_cnn, mnist_batch):
    x, y = mnist_batch
    x, y = x[::25][:8], y[::25][:8]
    target = (y + 3) % 10
    attack = JSMA()  # γ = 0.1: 78 features → 39 pairs → at most 78 pixels of MNIST
    res = attack(small_cnn, x, y, target=target)
    check_contract(small_cnn, x, y, res, attack.threat, target)
    changed = ((res.x_adv - x) != 0).flatten(1).sum(dim=1)
    assert bool((changed <= 2 * attack.max_pairs(784)).all())
    assert bool((res.norm[res.success] <= 78).all())
    # θ = +1: pixels only increase, to 1
    assert bool((res.x_adv >= x).all())
    assert bool((res.x_adv[res.x_adv != x] == 1).all())
    assert res.success_rate >= 0.25  # targeted toward y + 3 within 78 pixels: 4 of these 8 at the time of writing


def test_fmn_linf_is_no_larger_than_a_pgd_budget_that_succeeds():
    model = affine(3)
    x, y = points(model, 24)
    d = closed_form(model, x, y, "linf")
    eps = float(d.median())
    pgd = ar.attacks.create("pgd", norm="linf", eps=eps, steps=20)(model, x, y)
    fmn = FMN(ar.Linf())(model, x, y)
    assert pgd.success.any()
    assert bool((fmn.norm[pgd.success] <= eps * (1 + 1e-3)).all())


def test_sweep_follows_the_norms():
    model = affine(3)
    x, y = points(model, 16)
    sweep = DeepFool().sweep(model, x, y, epsilons=[0.0, 0.05, 0.1, 1.0])
    assert bool((sweep.success[1:].int() >= sweep.success[:-1].int()).all())
    assert torch.equal(sweep.success[-1], sweep.norm <= 1.0)


def test_deterministic_and_batch_independent():
    model = affine(3)
    x, y = points(model, 10)
    a = FMN(ar.L2(), steps=30)(model, x, y)
    b = FMN(ar.L2(), steps=30)(model, x, y)
    part = FMN(ar.L2(), steps=30)(model, x[:4], y[:4])
    assert torch.equal(a.x_adv, b.x_adv)
    assert torch.allclose(a.norm[:4], part.norm, rtol=1e-5)


def test_bad_configuration_fails_loudly():
    with pytest.raises(InputError):
        DeepFool(ar.L1())
    with pytest.raises(InputError):
        JSMA(theta=0)
    with pytest.raises(InputError):
        CarliniWagner(steps=0)
    with pytest.raises(InputError):
        JSMA(gamma=0.01)(affine(3), *points(affine(3), 2))


def _saturated_binary() -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    """Black 8x8 images with 2 white pixels; class 1 wins when the pixels sum to more than 4, so the
    smallest l2 change raises the 62 black pixels by 2/62 each (l2 = 2/√62): every pixel that must
    move sits at the box's edge, where C&W's tanh is flat."""
    x = torch.zeros(4, 1, 8, 8)
    for i in range(4):
        x[i, 0, i, 2 * i] = x[i, 0, 7 - i, 1] = 1.0
    fc = nn.Linear(64, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.stack([torch.zeros(64), torch.ones(64)]))
        fc.bias.copy_(torch.tensor([0.0, -4.0]))
    return nn.Sequential(nn.Flatten(), fc).eval(), x, torch.zeros(4, dtype=torch.long), 2 / 62**0.5


@pytest.mark.parametrize("make", [CarliniWagner.fast, CarliniWagner], ids=["fast", "paper"])
def test_cw_ends_adversarial_when_the_pixels_to_move_are_saturated(make):
    """The unbounded search must end adversarial given enough c, even where every pixel that has to
    move starts at 0 (|w| ≈ 7 in tanh space) — and still find the minimum."""
    model, x, y, d = _saturated_binary()
    res = make()(model, x, y)
    assert bool(res.success.all()), res.success
    assert bool((res.norm >= d * (1 - 1e-3)).all())
    assert bool((res.norm <= d * 1.1).all()), res.norm


@pytest.mark.slow
def test_cw_breaks_every_point_of_an_undefended_cnn(small_cnn, mnist_batch):
    x, y = mnist_batch
    with torch.no_grad():
        correct = small_cnn(x).argmax(1) == y
    x, y = x[correct][::10][:20], y[correct][::10][:20]
    res = CarliniWagner.fast()(small_cnn, x, y)
    check_contract(small_cnn, x, y, res, ar.L2())
    assert bool(res.success.all()), res.success
