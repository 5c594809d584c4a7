"""Randomized smoothing (Cohen et al. 2019): the closed-form linear case, the Clopper–Pearson bound's
coverage, abstention on ties, and the interval certified <= attacked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from torch import nn

from advrobust.defences import ABSTAIN, GaussianSmoothing, certified_accuracy, certify_and_attack
from advrobust.defences.bounds import clopper_pearson_lower
from advrobust.errors import InputError

SHAPE = (1, 4, 4)


class LinearBinary(nn.Module):
    """f(x) = sign(w·x + b) as two logits [0, w·x + b]: class 1 iff w·x + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.flatten().clone())
        self.b = nn.Parameter(torch.tensor(float(b)))

    def margin(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.margin(x)
        return torch.stack([torch.zeros_like(m), m], dim=1)


def _linear() -> LinearBinary:
    g = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, SHAPE, generator=g) * 2.0 - 1.0  # |w_i| = 1: every point below stays in the box
    return LinearBinary(signs, b=-0.3)


def _points_with_margins(model: LinearBinary, margins: list[float]) -> torch.Tensor:
    """Points inside [0, 1] whose signed distance w·x+b equals each margin (times ‖w‖)."""
    w, b = model.w.detach(), float(model.b.detach())
    base = torch.full_like(w, 0.5)
    x = []
    for m in margins:
        # move from the middle of the box along w until w·x + b = m
        t = (m - float(base @ w + b)) / float(w @ w)
        x.append((base + t * w).reshape(SHAPE))
    x = torch.stack(x)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    return x


def test_linear_closed_form_certificate() -> None:
    """For f = sign(w·x + b): p_A = Φ(|w·x+b| / (σ‖w‖)) and the radius tends to |w·x+b| / ‖w‖."""
    model, sigma, n, alpha = _linear(), 0.5, 20000, 0.001
    wnorm = float(model.w.detach().norm())
    margins = [0.2 * wnorm, -0.5 * wnorm, 0.9 * wnorm]
    x = _points_with_margins(model, margins)
    cert = GaussianSmoothing(model, sigma=sigma).certify(x, n0=100, n=n, alpha=alpha, seed=3)
    for i, m in enumerate(margins):
        p_true = norm.cdf(abs(m) / (sigma * wnorm))
        radius_true = abs(m) / wnorm
        assert int(cert.prediction[i]) == (1 if m > 0 else 0)
        p = float(cert.p_lower[i])
        # conservative, and within the Monte-Carlo tolerance (the bound sits ~3.1 sd below p)
        assert p <= p_true
        assert p >= p_true - 5 * math.sqrt(p_true * (1 - p_true) / n)
        r = float(cert.radius[i])
        assert r <= radius_true
        assert r == pytest.approx(sigma * norm.ppf(p))
        assert r >= sigma * norm.ppf(p_true - 5 * math.sqrt(p_true * (1 - p_true) / n))
    assert cert.samples == 3 * (100 + n)


def test_clopper_pearson_exact_coverage() -> None:
    """P(bound <= p) >= 1 - alpha, computed exactly over the binomial law for several p and n."""
    alpha = 0.05
    for trials in (10, 50, 200):
        k = np.arange(trials + 1)
        bound = clopper_pearson_lower(k, np.full_like(k, trials), alpha)
        assert np.all(np.diff(bound) > 0)  # more successes, a higher bound
        assert np.all(bound <= k / trials)
        for p in (0.03, 0.3, 0.5, 0.77, 0.99):
            coverage = binom.pmf(k, trials, p)[bound <= p].sum()
            assert coverage >= 1 - alpha - 1e-12, (trials, p, coverage)


def test_clopper_pearson_coverage_over_seeds() -> None:
    """The same on simulated draws: a known Bernoulli p, 4000 seeds of n = 50 trials."""
    rng = np.random.default_rng(0)
    alpha, p, trials, runs = 0.05, 0.62, 50, 4000
    k = rng.binomial(trials, p, size=runs)
    covered = (clopper_pearson_lower(k, trials, alpha) <= p).mean()
    assert covered >= 1 - alpha - 3 * math.sqrt(alpha * (1 - alpha) / runs)
    # and a bound that ignored the sampling error (the plain frequency) would fail it
    assert (k / trials <= p).mean() < 1 - alpha


def test_abstains_on_a_tie_and_not_far_from_it() -> None:
    """On the decision boundary f's classes tie under noise: PREDICT abstains (wrong w.p. <= alpha),
    CERTIFY abstains; far from it, neither does."""
    model = _linear()
    wnorm = float(model.w.detach().norm())
    x = _points_with_margins(model, [0.0, 1.5 * wnorm])
    smoothed = GaussianSmoothing(model, sigma=0.25)
    abstained = [int(smoothed.predict(x[:1], n=500, alpha=0.01, seed=s)[0]) == ABSTAIN for s in range(20)]
    assert sum(abstained) >= 18
    assert int(smoothed.predict(x[1:], n=500, alpha=0.01)[0]) == 1
    cert = smoothed.certify(x, n0=50, n=500, alpha=0.01)
    assert int(cert.prediction[0]) == ABSTAIN and float(cert.radius[0]) == 0.0
    assert int(cert.prediction[1]) == 1 and float(cert.radius[1]) > 0


def test_counts_do_not_depend_on_batch_size_or_batch() -> None:
    model = _linear()
    x = _points_with_margins(model, [0.1, 0.4, -0.2])
    a = GaussianSmoothing(model, sigma=0.5, batch_size=7).sample_counts(x, 100, seed=5)
    b = GaussianSmoothing(model, sigma=0.5, batch_size=1000).sample_counts(x, 100, seed=5)
    assert torch.equal(a, b) and int(a.sum()) == 300
    assert not torch.equal(a, GaussianSmoothing(model, sigma=0.5).sample_counts(x, 100, seed=6))


def test_certified_accuracy_is_monotone_in_radius() -> None:
    model = _linear()
    wnorm = float(model.w.detach().norm())
    x = _points_with_margins(model, [0.1 * wnorm, 0.3 * wnorm, -0.6 * wnorm, 0.0])
    y = torch.tensor([1, 1, 0, 1])
    cert = GaussianSmoothing(model, sigma=0.5).certify(x, n0=50, n=2000, alpha=0.001)
    acc = certified_accuracy(cert, y, [0.0, 0.05, 0.2, 0.5, 2.0])
    assert acc == sorted(acc, reverse=True)
    assert acc[0] == 0.75 and acc[-1] == 0.0


def test_interval_certified_never_exceeds_attacked_and_attack_breaks_linear() -> None:
    """certified <= attacked, per eps and per point; an eps beyond a point's distance to the boundary
    lets the attack break it (the attacked bound is not vacuous)."""
    model = _linear()
    wnorm = float(model.w.detach().norm())
    margins = [0.15 * wnorm, 0.35 * wnorm, -0.25 * wnorm, 0.6 * wnorm]
    x = _points_with_margins(model, margins)
    y = torch.tensor([1, 1, 0, 1])
    smoothed = GaussianSmoothing(model, sigma=0.25)
    res = certify_and_attack(smoothed, x, y, epsilons=[0.0, 0.1, 0.3, 1.0], n0=50, n=2000, draws=16, steps=10)
    for c, a in zip(res.certified, res.attacked, strict=True):
        assert c <= a
    certified_points = (res.certificate.prediction == y).unsqueeze(0) & (
        res.certificate.radius.unsqueeze(0) >= torch.tensor(res.epsilons, dtype=torch.float64).unsqueeze(1)
    )
    assert not bool((certified_points & res.broken).any())
    assert res.attacked == sorted(res.attacked, reverse=True)
    assert res.attacked[-1] == 0.0  # eps = 1.0 exceeds every point's distance |w·x+b|/‖w‖ <= 0.6
    assert res.certified[0] == res.attacked[0] == res.clean_accuracy == 1.0
    assert res.to_dict()["rows"][1]["gap"] >= 0


def test_bad_input() -> None:
    model = _linear()
    with pytest.raises(InputError, match="sigma"):
        GaussianSmoothing(model, sigma=0)
    with pytest.raises(InputError, match="alpha"):
        GaussianSmoothing(model, sigma=0.1).predict(torch.zeros(1, *SHAPE), alpha=1.5)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        GaussianSmoothing(model, sigma=0.1).certify(torch.full((1, *SHAPE), 2.0))


def test_evaluate_reports_the_interval_and_the_store_keeps_it(tmp_path) -> None:
    """ar.evaluate on a smoothed model: certified <= attacked per eps, in the result, its JSON, the
    table and the results store."""
    import advrobust as ar
    from advrobust.cli.evaluate import results_table
    from advrobust.evaluation import EvaluationResult
    from advrobust.evaluation.store import ResultStore

    model = _linear()
    wnorm = float(model.w.detach().norm())
    x = _points_with_margins(model, [0.15 * wnorm, 0.35 * wnorm, -0.25 * wnorm, 0.6 * wnorm, 0.05 * wnorm])
    y = torch.tensor([1, 1, 0, 1, 0])  # the last point is misclassified
    smoothed = GaussianSmoothing(model, sigma=0.25, n0=50, n=2000)
    store = ResultStore(tmp_path / "results.sqlite")
    result = ar.evaluate(smoothed, x, y, threat=ar.L2(), epsilons=[0.1, 0.3, 1.0], store=store)
    certified, attacked = result.certified_accuracy, result.robust_accuracy
    assert list(certified) == [0.1, 0.3, 1.0]
    for eps in certified:
        assert certified[eps] <= attacked[eps] <= result.clean_accuracy == 0.8
    assert attacked[1.0] == 0.0 and certified[0.1] > 0
    assert not bool((result.certified & ~result.robust).any())  # per point too
    again = EvaluationResult.from_json(result.to_json())
    assert torch.equal(again.certified, result.certified) and again.certification["sigma"] == 0.25
    row = store.rows()[0]
    assert row.certified_accuracy == certified and row.flat()["certified@0.3"] == certified[0.3]
    assert "certified" in str(results_table(result).renderables[1].columns[-1].header)
    from advrobust.report import write_report

    page = write_report(tmp_path / "report.html", again).read_text()
    assert "Certified and attacked robust accuracy" in page and "interval.png" in page
    with pytest.raises(InputError, match="l2"):
        ar.evaluate(smoothed, x, y, threat=ar.Linf(eps=0.1))


def test_soft_classifier_is_randomized_and_the_attack_averages_it_by_eot(monkeypatch) -> None:
    """The attack's model draws fresh noise on every pass (reseeding repeats it), and the interval's
    attack reaches it through the shared EOT runner, eot passes per gradient."""
    from advrobust.defences import interval
    from advrobust.runtime.eot import EOT

    model = _linear()
    x = _points_with_margins(model, [0.2, -0.3])
    soft = GaussianSmoothing(model, sigma=0.5).soft(draws=4, seed=3)
    first, second = soft(x), soft(x)
    assert not torch.allclose(first, second)
    soft.reseed()
    assert torch.equal(soft(x), first)
    assert torch.allclose(first.exp().sum(dim=1), torch.ones(2))  # log-probabilities
    passes: list[int] = []
    original = EOT.forward_and_grad

    def counted(self, x, objective):
        passes.append(self.draws)
        return original(self, x, objective)

    monkeypatch.setattr(EOT, "forward_and_grad", counted)
    wnorm = float(model.w.detach().norm())
    res = certify_and_attack(GaussianSmoothing(model, sigma=0.25), _points_with_margins(model, [0.3 * wnorm]),
                             torch.tensor([1]), epsilons=[0.2], n0=20, n=200, draws=2, eot=3, steps=4)
    assert passes and set(passes) == {3}
    assert "eot=3" in res.attack and res.queries_per_point == 5 * 2 * 3 + 200
    assert interval.default_attack(0.5).eot == interval.ATTACK_EOT > 1


def test_an_abstention_inside_a_certified_ball_is_not_a_break(monkeypatch) -> None:
    """Cohen et al.'s certificate says g is constant on the ball, not that PREDICT decides there: on
    the ball's edge p_A ~ 1/2 and PREDICT abstains. So ``attacked`` (about g) does not count an
    abstention as a break; ``attacked_abstain_as_error`` (PREDICT as deployed) does."""
    model = _linear()
    wnorm = float(model.w.detach().norm())
    sigma = 0.25
    x = _points_with_margins(model, [0.06 * wnorm])  # p_A = Φ(0.06 / σ) ≈ 0.6
    smoothed = GaussianSmoothing(model, sigma=sigma)
    cert = smoothed.certify(x, n0=100, n=100_000, alpha=0.001)
    radius = float(cert.radius[0])
    assert int(cert.prediction[0]) == 1 and radius > 0.03
    edge = x - 0.999 * radius * model.w.detach().reshape(1, *SHAPE) / wnorm  # inside the certified ball
    abstains = [int(smoothed.predict(edge, n=1000, seed=s)[0]) == ABSTAIN for s in range(10)]
    assert sum(abstains) >= 9

    # the bookkeeping: an attack whose every input makes PREDICT abstain breaks nothing in `attacked`
    y = torch.tensor([1])
    monkeypatch.setattr(GaussianSmoothing, "predict", lambda self, x, **kw: torch.full((x.shape[0],), ABSTAIN))
    res = certify_and_attack(smoothed, x, y, epsilons=[0.0, 0.5 * radius], n0=50, n=2000, draws=2, eot=2, steps=2)
    assert res.attacked == [1.0, 1.0] and res.attacked_abstain_as_error == [1.0, 0.0]
    assert not res.broken.any() and res.abstained.tolist() == [[False], [True]]
    assert res.certified[1] == 1.0 and res.rows()[1]["attacked_abstain_as_error"] == 0.0
