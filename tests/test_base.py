"""The attack contract that the base class guarantees for every attack (DESIGN.md)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.base import FixedBudgetAttack, MinimumNormAttack
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError, ModelAccessError
from advrobust.runtime import Runner


class RandomInBall(FixedBudgetAttack):
    """Test double: one random start, one gradient query per point (to exercise the Oracle)."""

    name = "random-in-ball"

    def _run(self, ctx):
        ctx.oracle.logits_and_grad(ctx.x, lambda z: z.sum(dim=1))
        # deliberately outside the ball: the base must project it back
        return self.threat.random_start(ctx.x, ctx.generator) + 0.5


class ClaimsEverything(MinimumNormAttack):
    """Test double: returns the clean input (never adversarial) and a far point for one sample."""

    name = "claims-everything"
    norms = ("l2",)

    def _run(self, ctx):
        x_adv = ctx.x.clone()
        x_adv[0] = 1.0 - ctx.x[0]
        return x_adv


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 4, 4, generator=gen)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return x, y


def test_result_is_projected_confirmed_and_counted(linear_model, batch):
    x, y = batch
    res = RandomInBall(ar.Linf(eps=0.1))(linear_model, x, y)
    assert bool(ar.Linf(eps=0.1).contains(res.x_adv, x).all())
    with torch.no_grad():
        pred = linear_model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y)
    assert torch.allclose(res.norm, ar.Linf().norm(res.x_adv - x))
    assert res.queries.tolist() == [2] * 6  # the clean forward + one gradient query


def test_same_seed_same_result_other_seed_other_result(linear_model, batch):
    x, y = batch
    a = RandomInBall(ar.L2(eps=0.5), seed=3)(linear_model, x, y)
    b = RandomInBall(ar.L2(eps=0.5), seed=3)(linear_model, x, y)
    c = RandomInBall(ar.L2(eps=0.5), seed=4)(linear_model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and not torch.equal(a.x_adv, c.x_adv)


def test_model_modes_restored_and_no_parameter_gradients(batch):
    x, y = batch
    model = Mixed().train()
    model.body[1].eval()  # a module the user put in eval mode on purpose
    RandomInBall(ar.Linf(eps=0.1))(model, x, y)
    assert model.training and model.body[2].training and not model.body[1].training
    assert all(p.grad is None for p in model.parameters())


def test_minimum_norm_failures_get_infinite_norm_and_clean_input(linear_model, batch):
    x, y = batch
    res = ClaimsEverything(ar.L2())(linear_model, x, y)
    with torch.no_grad():
        clean_wrong = linear_model(x).argmax(1) != y
        far_wrong = linear_model(1.0 - x[:1]).argmax(1) != y[:1]
    expected = clean_wrong.clone()
    expected[0] = far_wrong[0] | clean_wrong[0]
    assert torch.equal(res.success, expected)
    assert bool(torch.isinf(res.norm[~res.success]).all())
    assert torch.equal(res.x_adv[~res.success], x[~res.success])


def test_minimum_norm_sweep_compares_norms(linear_model, batch):
    x, y = batch
    sweep = ClaimsEverything(ar.L2()).sweep(linear_model, x, y, [10.0, 0.0])
    assert sweep.epsilons.tolist() == [0.0, 10.0]
    assert bool((sweep.success[0] <= sweep.success[1]).all())


def test_fixed_budget_sweep_is_monotone_in_eps(linear_model, batch):
    x, y = batch
    sweep = RandomInBall(ar.Linf(eps=0.1)).sweep(linear_model, x, y, [0.3, 0.0, 0.05, 0.6])
    assert sweep.epsilons.tolist() == [0.0, 0.05, 0.3, 0.6]
    assert bool((sweep.success[:-1] <= sweep.success[1:]).all())


def test_empty_batch(linear_model):
    res = RandomInBall(ar.Linf(eps=0.1))(linear_model, torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long))
    assert len(res) == 0 and res.success_rate == 0.0


@pytest.mark.parametrize(
    ("x", "y", "target", "message"),
    [
        (torch.rand(2, 1, 4, 4) * 2, torch.tensor([0, 1]), None, r"\[0, 1\]"),
        (torch.randint(0, 255, (2, 1, 4, 4)), torch.tensor([0, 1]), None, "float"),
        (torch.rand(16), torch.tensor([0]), None, "shape"),
        (torch.rand(2, 1, 4, 4), torch.tensor([0.0, 1.0]), None, "integer"),
        (torch.rand(2, 1, 4, 4), torch.tensor([0, 1, 2]), None, r"shape \(2,\)"),
        (torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), torch.tensor([2, 1]), "target equals the label at index 1"),
        (torch.rand(2, 1, 4, 4), torch.tensor([0, 7]), None, "outside"),
        (torch.rand(2, 1, 4, 4), torch.tensor([0, 1]), torch.tensor([1, 5]), "outside"),
        (torch.full((2, 1, 4, 4), math.nan), torch.tensor([0, 1]), None, "NaN"),
    ],
)
def test_bad_input_fails_early_with_a_clear_message(linear_model, x, y, target, message):
    with pytest.raises(InputError, match=message):
        RandomInBall(ar.Linf(eps=0.1))(linear_model, x, y, target)


def test_wrong_input_shape_for_the_model_is_reported(linear_model):
    with pytest.raises((InputError, RuntimeError)):
        RandomInBall(ar.Linf(eps=0.1))(linear_model, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))


def test_configuration_errors():
    with pytest.raises(InputError, match="threat model"):
        RandomInBall(0.3)
    with pytest.raises(InputError, match="give the threat model an eps"):
        RandomInBall(ar.Linf())
    with pytest.raises(InputError, match="defined for l2"):
        ClaimsEverything(ar.Linf())


def test_probabilities_are_warned_about(linear_model, batch):
    x, y = batch
    softmaxed = nn.Sequential(linear_model, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="probabilities"):
        RandomInBall(ar.Linf(eps=0.1))(softmaxed, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RandomInBall(ar.Linf(eps=0.1))(linear_model, x, y)


def test_gradient_attacks_refuse_score_only_models(linear_model, batch):
    x, y = batch

    class ScoresOnly:
        access = "scores"

        def __call__(self, inputs):
            return linear_model(inputs).detach()

    with pytest.raises(ModelAccessError, match="needs gradients"):
        RandomInBall(ar.Linf(eps=0.1))(ScoresOnly(), x, y)


def test_oracle_counts_repeated_rows_per_point(linear_model):
    oracle = Oracle(Runner(linear_model), 3, torch.device("cpu"))
    x = torch.rand(5, 1, 4, 4)
    oracle.logits(x, index=torch.tensor([0, 0, 0, 2, 2]))
    assert oracle.queries.tolist() == [3, 0, 2]


def test_registry_creates_and_lists():
    assert ar.attacks.list("*fgsm*") == ["fgsm", "i-fgsm", "mi-fgsm", "fgsm-rs"]
    spec = ar.attacks.spec("BIM")
    assert spec.cls == "BIM"
    with pytest.raises(InputError, match="unknown attack"):
        ar.attacks.create("nonexistent")


def test_pixel_attacks_refuse_inputs_that_are_not_images(linear_model):
    class PixelOnly(RandomInBall):
        needs_images = True

    flat = torch.rand(2, 16)
    with pytest.raises(InputError, match=r"images of shape \(N, C, H, W\), got \(2, 16\)"):
        PixelOnly(ar.Linf(eps=0.1))(linear_model, flat, torch.tensor([0, 1]))
    assert len(RandomInBall(ar.Linf(eps=0.1))(linear_model, flat, torch.tensor([0, 1]))) == 2


def test_perturb_attacks_every_point_in_the_ball_and_restores_modes(linear_model, batch):
    """``perturb`` (training's inner maximization): no point is skipped, the result is projected,
    a targeted call pushes towards the target, the model's modes survive, and the same generator
    seed gives the same images."""
    x, y = batch
    wrong = linear_model(x).argmax(1) != y
    assert bool(wrong.any())
    attack = ar.attacks.create("pgd", eps=0.3, steps=10, early_stop=False)
    assert torch.equal(attack(linear_model, x, y).x_adv[wrong], x[wrong])  # measuring skips them
    moved = attack.perturb(linear_model, x, y)
    assert bool((moved != x).flatten(1).any(1).all()) and bool(ar.Linf(eps=0.3).contains(moved, x).all())
    target = (y + 1) % 3
    toward = attack.perturb(linear_model, x, y, target)
    margin = lambda inp: linear_model(inp).gather(1, target[:, None]).squeeze(1)  # noqa: E731
    assert bool((margin(toward) > margin(x)).all())
    same = [attack.perturb(linear_model, x, y, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    model = Mixed().train()
    attack.perturb(model, x, y)
    assert model.training and all(p.grad is None for p in model.parameters())


class _Identity(nn.Module):
    """Logits are the two pixels of a 1×1×1×2 image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class _RoundsTheOtherWay(Runner):
    """A fast path that differs from the plain model by 5e-5 (inside the tolerance that tells rounding
    from randomness): enough to turn a near tie around."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + torch.tensor([0.0, 5e-5])


class _Policy(ar.runtime.RuntimePolicy):
    def runner(self, model):
        return _RoundsTheOtherWay(model)


def test_clean_verdicts_come_from_the_plain_model_not_the_fast_path():
    """A point the plain model gets right by 2e-5 looks misclassified on the fast path; it must still be
    attacked (and broken), not skipped as 'already adversarial' and then reported robust."""
    x, y = torch.tensor([[[[0.3, 0.3 - 2e-5]]]]), torch.tensor([0])
    result = ar.attacks.FGSM(ar.Linf(eps=0.01))(_Identity(), x, y, runtime=_Policy())
    assert bool(result.success.all())
    assert float(result.norm[0]) > 0  # broken by the attack, not by the clean pass
