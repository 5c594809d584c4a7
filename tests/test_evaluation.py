"""advrobust.evaluate: worst case per point over ensembles, eps sweeps, closed forms, bookkeeping."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.base import MinimumNormAttack
from advrobust.errors import InputError
from advrobust.evaluation import EvaluationResult


class BinaryLinear(nn.Module):
    """``z = [0, w·x + b]``: class 1 iff ``w·x + b > 0``."""

    def __init__(self, d: int = 16, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(d, generator=gen))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


class LinearMinNorm(MinimumNormAttack):
    """The exact minimal l∞ perturbation of a binary linear model, box ignored then clipped:
    ``r = −(s/‖w‖₁)·sign(w)·(1 + 1e-4)`` (a test double for the minimum-norm path)."""

    name = "linear-min"
    norms = ("linf",)

    def _run(self, ctx):
        oracle, x, y = ctx.oracle, ctx.x, ctx.y
        model = oracle.model
        oracle.logits(x)
        w = model.w.detach()
        s = oracle.logits(x)[:, 1]
        towards = torch.where(y == 1, -1.0, 1.0)  # move s down for class 1, up for class 0
        size = s.abs() / w.abs().sum() * (1 + 1e-4)
        r = (towards * size)[:, None] * w.sign()[None, :]
        return (x + r.reshape(x.shape)).clamp(0, 1)


def _binary_data(model: BinaryLinear, n: int = 120, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 4, 4, generator=gen)
    model.b.data = -(x.flatten(1) @ model.w).median()
    y = model(x).argmax(1)
    y[:10] = 1 - y[:10]  # ten clean errors
    return x, y


def _closed_form_robust(model: BinaryLinear, x, y, eps: float) -> torch.Tensor:
    """Robust iff the best l∞ ∩ box perturbation of the margin keeps the label (linear: exact)."""
    w = model.w.detach()
    direction = torch.where(y == 1, -1.0, 1.0)[:, None] * w.sign()[None, :]
    xf = x.flatten(1)
    x_worst = (xf + eps * direction).clamp(0, 1)
    s = x_worst @ w + model.b.detach()
    still = torch.where(y == 1, s > 0, s <= 0)
    clean = model(x).argmax(1) == y
    return clean & still


def test_fgsm_matches_closed_form_on_linear_model():
    model = BinaryLinear()
    x, y = _binary_data(model)
    eps_list = [0.02, 0.05, 0.1, 0.2]
    res = ar.evaluate(model, x, y, epsilons=eps_list, suite=["fgsm"], batch_size=32)
    for e, eps in enumerate(eps_list):
        expected = _closed_form_robust(model, x, y, eps)
        assert torch.equal(res.robust[e], expected), eps
    assert res.robust_accuracy[0.2] < res.robust_accuracy[0.02]  # the sweep means something here


def test_minimum_norm_attack_answers_every_eps_from_one_run():
    model = BinaryLinear()
    x, y = _binary_data(model)
    eps_list = [0.02, 0.05, 0.1]
    res = ar.evaluate(model, x, y, epsilons=eps_list, suite=[LinearMinNorm(ar.Linf())])
    w = model.w.detach()
    s = model(x)[:, 1].detach()
    exact = s.abs() / w.abs().sum()
    correct = model(x).argmax(1) == y
    for e, eps in enumerate(eps_list):
        # the minimal l∞ norm ignoring the box is a lower bound: below it nothing can break a point
        assert not bool((~res.robust[e] & correct & (exact > eps * 1.001)).any())
    broken = correct & torch.isfinite(res.min_norm)
    assert bool(broken.any())
    assert torch.allclose(res.min_norm[broken], exact[broken] * (1 + 1e-4), rtol=1e-3)
    records = res.records_for(0.1)
    assert records[0].attack == "linear-min" and records[0].attacked == int(correct.sum())


def test_ensemble_is_no_weaker_than_any_member(small_cnn, mnist_batch):
    """Pointwise: a point robust to the ensemble is robust to each member run alone. Exact for
    deterministic members (a randomized one draws other random starts alone than in the ensemble)."""
    x, y = mnist_batch[0][::2], mnist_batch[1][::2]
    eps_list = [0.1, 0.2]
    pgd = ar.attacks.PGD(ar.Linf(eps=0.1), steps=10, random_start=False)
    members = ["fgsm", "i-fgsm", pgd]
    ens = ar.evaluate(small_cnn, x, y, epsilons=eps_list, suite=members, batch_size=64)
    alone = {}
    for member in members:
        alone[str(member)] = ar.evaluate(small_cnn, x, y, epsilons=eps_list, suite=[member], batch_size=64)
        assert bool((ens.robust <= alone[str(member)].robust).all()), member
        for eps in eps_list:
            assert ens.robust_accuracy[eps] <= alone[str(member)].robust_accuracy[eps]
    assert ens.robust_accuracy[0.2] < alone["fgsm"].robust_accuracy[0.2]  # later members add something


def test_bookkeeping_invariants(small_cnn, mnist_batch):
    x, y = mnist_batch[0][::4], mnist_batch[1][::4]
    eps_list = [0.05, 0.15, 0.3]
    res = ar.evaluate(small_cnn, x, y, epsilons=eps_list, suite="quick", batch_size=16)
    assert res.suite == "quick" and res.attacks == ["fgsm", "pgd"]
    assert bool((res.robust <= res.clean_correct[None]).all())  # clean errors never robust
    assert bool((res.robust[1:] <= res.robust[:-1]).all())  # robust at larger eps -> at smaller
    for e, eps in enumerate(eps_list):
        for i in range(res.n_points):
            broken = bool(res.clean_correct[i]) and not bool(res.robust[e, i])
            assert (res.broken_by[e][i] is not None) == broken
            if broken:
                assert float(res.min_norm[i]) <= eps * (1 + 1e-5)
    assert bool((res.min_norm[~res.clean_correct] == 0).all())
    assert math.isinf(float(res.min_norm[res.robust[-1]].min())) if bool(res.robust[-1].any()) else True
    rows = res.per_class()
    assert sum(r["n"] for r in rows) == res.n_points
    robust_count = sum(r["robust_accuracy"][0.3] * r["n"] for r in rows)
    assert robust_count == pytest.approx(res.robust_accuracy[0.3] * res.n_points)
    lo, hi = res.robust_accuracy_ci[0.15]
    assert lo <= res.robust_accuracy[0.15] <= hi
    for ex in res.examples:  # shown examples really are adversarial, inside their ball
        assert ex.adv_pred != ex.label and ex.clean_pred == ex.label
        assert float((ex.x_adv - ex.x).abs().max()) <= ex.eps + 1e-6
    assert {ex.eps for ex in res.examples} == set(eps_list)
    # the points come sorted by class, 16 per chunk: the kept examples still span classes
    labels = [ex.label for ex in res.examples if ex.eps == 0.3]
    assert len(labels) == 4 and len(set(labels)) == 4, labels


def test_fixed_budget_attack_without_the_norm_is_skipped_with_reason(linear_model):
    x = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = linear_model(x).argmax(1)
    res = ar.evaluate(linear_model, x, y, threat=ar.L1(eps=1.0), suite=["fgsm", "pgd"])
    skipped = [r for r in res.per_attack if r.attack == "fgsm"]
    assert skipped and all(r.skipped_reason and "l1" in r.skipped_reason for r in skipped)
    assert [r.skipped_reason for r in res.per_attack if r.attack == "pgd"] == [None]


def test_dataset_input_and_json_round_trip(linear_model, tmp_path):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(30, 1, 4, 4, generator=gen)
    data = SimpleNamespace(x=x, y=linear_model(x).argmax(1), classes=["a", "b", "c"], name="toy")
    res = ar.evaluate(linear_model, data, epsilons=[0.1, 0.5], suite="quick")
    assert res.data_name == "toy" and res.classes == ["a", "b", "c"]
    back = EvaluationResult.load(res.save(tmp_path / "r.json"))
    assert back.to_dict() == res.to_dict()
    assert back.robust_accuracy_at(0.5) == res.robust_accuracy_at(0.5)


def test_bad_inputs_fail_with_one_line(linear_model):
    x = torch.rand(4, 1, 4, 4)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(InputError, match="unknown suite"):
        ar.evaluate(linear_model, x, y, suite="strongest")
    with pytest.raises(InputError, match="input"):
        ar.evaluate(linear_model, torch.rand(4, 3, 8, 8), y)
    with pytest.raises(InputError, match="eps"):
        ar.evaluate(linear_model, x, y, threat=ar.Linf())
    with pytest.raises(InputError):
        ar.evaluate(linear_model, x, y, epsilons=[-0.1])


def test_package_exports_resolve():
    import advrobust.evaluation as ev
    from advrobust.evaluation import curves, masking, store, transfer

    assert ar.evaluate is ev.evaluate and ar.audit is masking.audit
    assert ev.ResultStore is store.ResultStore and ev.transfer_matrix is transfer.transfer_matrix
    assert ev.robustness_curve is curves.robustness_curve
    assert ev.minimal_perturbations is curves.minimal_perturbations


def test_suite_entries_may_carry_options(linear_model):
    from advrobust.evaluation.suites import build_suite

    _, members = build_suite([("pgd", {"steps": 3}), "pgd"], ar.Linf(eps=0.1))
    assert [m.name for m in members] == ["pgd", "pgd#2"]
    assert members[0].attack.steps == 3 and members[1].attack.steps != 3
    _, plus = build_suite("plus", ar.Linf(eps=0.3))
    restarts = {m.name: getattr(m.attack, "restarts", None) for m in plus}
    assert restarts["apgd-ce"] == 5 and restarts["apgd-dlr"] == 5
    with pytest.raises(InputError, match="takes no option 'stepz'; its options: .*steps"):
        build_suite([("pgd", {"stepz": 3})], ar.Linf(eps=0.1))
    with pytest.raises(InputError, match="name, a \\(name, options\\) pair"):
        build_suite([("pgd", 3)], ar.Linf(eps=0.1))


def test_plus_is_no_weaker_than_standard(small_cnn, mnist_batch):
    """``plus`` runs ``standard``'s attacks and APGD-DLR with restarts besides: it never reports a
    higher robust accuracy on the same points."""
    x, y = mnist_batch[0][::8], mnist_batch[1][::8]
    threat = ar.Linf(eps=0.15)
    standard = ar.evaluate(small_cnn, x, y, threat=threat, suite="standard", batch_size=64)
    plus = ar.evaluate(small_cnn, x, y, threat=threat, suite="plus", batch_size=64)
    assert plus.attacks == ["apgd-ce", "apgd-dlr", "apgd-t", "fmn", "square"]
    assert plus.robust_accuracy[0.15] <= standard.robust_accuracy[0.15] < plus.clean_accuracy
    assert bool((plus.robust <= plus.clean_correct[None]).all())
