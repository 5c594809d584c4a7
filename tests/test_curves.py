"""Minimal perturbations over several attacks, the robustness curve and its summary, the cross-check."""

from __future__ import annotations

import math

import pytest
import torch

import advrobust as ar
from advrobust.attacks.deepfool import DeepFool
from advrobust.attacks.fmn import FMN
from advrobust.errors import InputError
from advrobust.evaluation.curves import cross_check, minimal_perturbations, robustness_curve


@pytest.fixture
def batch(linear_model):
    gen = torch.Generator().manual_seed(0)
    x = (0.5 + 0.1 * torch.randn(40, 1, 4, 4, generator=gen)).clamp(0, 1)
    y = torch.randint(0, 3, (40,), generator=gen)  # random labels: some points are misclassified
    return x, y


def test_curve_on_a_hand_example():
    norms = torch.tensor([0.5, 1.0, math.inf, 2.0])
    correct = torch.tensor([True, True, True, False])
    curve = robustness_curve(norms, correct)
    assert curve.epsilons.tolist() == [0.0, 0.5, 1.0]
    assert curve.robust_accuracy.tolist() == [0.75, 0.5, 0.25]
    assert curve.at([0.49, 0.5, 0.99, 1.0, 1e9]).tolist() == [0.75, 0.5, 0.5, 0.25, 0.25]
    s = curve.summary(max_eps=2.0)
    assert s.median_norm == 1.0  # of the clean-correct points 0.5, 1, inf
    assert s.eps_50 == 1.0  # 0.5 at eps = 0.99 is not below 50%; 0.25 at 1.0 is
    assert s.auc == pytest.approx((0.5 + 1.0 + 2.0 + 0.0) / 4)
    assert s.mean_robust_accuracy == pytest.approx(s.auc / 2.0)


def test_auc_matches_numerical_integration_and_curve_never_rises():
    gen = torch.Generator().manual_seed(3)
    norms = torch.rand(200, generator=gen) * 3
    norms[::7] = math.inf
    correct = torch.rand(200, generator=gen) > 0.2
    curve = robustness_curve(norms, correct)
    assert bool((curve.robust_accuracy[1:] <= curve.robust_accuracy[:-1]).all())
    assert float(curve.robust_accuracy[0]) == pytest.approx(float(correct.double().mean()))
    grid = torch.linspace(0, 2.5, 250_001, dtype=torch.float64)
    riemann = float(curve.at(grid.tolist()).mean()) * 2.5
    assert curve.summary(max_eps=2.5).auc == pytest.approx(riemann, abs=1e-4)
    s = curve.summary()
    assert float(curve.at(s.eps_50)[0]) < 0.5 <= float(curve.at(s.eps_50 - 1e-9)[0])


def test_summary_when_half_are_never_broken_or_clean_accuracy_is_low():
    curve = robustness_curve(torch.tensor([math.inf, math.inf, 1.0]), torch.tensor([True, True, True]))
    assert curve.summary().eps_50 == math.inf and curve.summary().median_norm == math.inf
    low = robustness_curve(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([True, False, False]))
    assert low.summary().eps_50 == 0.0


def test_bad_norms_fail_loudly():
    with pytest.raises(InputError):
        robustness_curve(torch.tensor([1.0, float("nan")]), torch.tensor([True, True]))
    with pytest.raises(InputError):
        robustness_curve(torch.tensor([1.0]), torch.tensor([True, True]))


def test_minimal_perturbations_takes_the_smallest_per_point(linear_model, batch):
    x, y = batch
    attacks = {"deepfool": DeepFool(), "fmn": FMN(ar.L2(), steps=30)}
    mins = minimal_perturbations(linear_model, x, y, attacks)
    with torch.no_grad():
        correct = linear_model(x).argmax(dim=1) == y
    assert torch.equal(mins.clean_correct, correct)
    assert not bool(correct.all()) and bool(correct.any())
    assert bool((mins.norm[~correct] == 0).all())
    assert all(mins.broken_by[i] == "clean" for i in (~correct).nonzero().squeeze(1).tolist())
    each = {name: a(linear_model, x[correct], y[correct]) for name, a in attacks.items()}
    best = torch.minimum(each["deepfool"].norm, each["fmn"].norm).double()
    assert torch.allclose(mins.norm[correct], best)
    for i, n in zip(correct.nonzero().squeeze(1).tolist(), best.tolist(), strict=True):
        assert each[mins.broken_by[i]].norm[correct[: i + 1].sum() - 1] == pytest.approx(n)
    # the stored examples are real: misclassified, at the reported distance
    with torch.no_grad():
        assert bool((linear_model(mins.x_adv[correct]).argmax(1) != y[correct]).all())
    assert torch.allclose(ar.L2().norm(mins.x_adv - x).double()[correct], mins.norm[correct], rtol=1e-5)
    # the curve equals each attack's own sweep at every eps, merged
    curve = mins.curve([0.0, 0.02, 0.05, 0.1])
    for e, acc in zip(curve.epsilons.tolist(), curve.robust_accuracy.tolist(), strict=True):
        survived = torch.zeros_like(correct)
        survived[correct] = (each["deepfool"].norm > e) & (each["fmn"].norm > e)
        assert acc == pytest.approx(float(survived.double().mean()))


def test_minimal_perturbations_rejects_mixed_norms_and_fixed_budget_attacks(linear_model, batch):
    x, y = batch
    with pytest.raises(InputError):
        minimal_perturbations(linear_model, x, y, [DeepFool(ar.L2()), DeepFool(ar.Linf())])
    with pytest.raises(InputError):
        minimal_perturbations(linear_model, x, y, [ar.attacks.create("pgd", norm="l2", eps=0.1)])


def test_cross_check_takes_the_minimum_of_both(linear_model, batch):
    x, y = batch
    mins = minimal_perturbations(linear_model, x, y, [FMN(ar.Linf(), steps=30)])
    eps = float(mins.norm[mins.clean_correct].median())
    mins.norm = torch.where(mins.clean_correct, mins.norm * 2, mins.norm)  # a deliberately weak "attack"
    pgd = ar.attacks.create("pgd", norm="linf", eps=eps, steps=20)
    check = cross_check(linear_model, x, y, mins, pgd, eps)
    assert check.robust_merged <= min(check.robust_curve, check.robust_fixed)
    assert check.robust_merged < check.robust_curve and bool(check.missed_by_curve.any())
    assert check.robust_curve == pytest.approx(float(mins.curve([eps]).robust_accuracy[0]))
    robust = [b == "" for b in check.broken_by]
    assert check.robust_merged == pytest.approx(sum(robust) / len(robust))
    for i, who in enumerate(check.broken_by):
        if bool(check.missed_by_curve[i]):
            assert who == "pgd"
        if who == "fmn":
            assert float(mins.norm[i]) <= eps
    with pytest.raises(InputError):
        cross_check(linear_model, x, y, mins, ar.attacks.create("pgd", norm="l2", eps=0.1), 0.1)
