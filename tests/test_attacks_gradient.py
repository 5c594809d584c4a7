"""FGSM, BIM, PGD, MI-FGSM and their shared loop: properties that fail if the attacks break."""

from __future__ import annotations

import copy

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import advrobust as ar
from advrobust.attacks.context import RunContext
from advrobust.attacks.gradient import BIM, FGSM, MIFGSM, PGD
from advrobust.attacks.iterative import BestTracker
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError
from advrobust.runtime import RuntimePolicy
from advrobust.threat import L1, L2, Linf

ITERATIVE = (BIM, PGD, MIFGSM)
ALL = (FGSM, *ITERATIVE)
SCALE = {"linf": 1.0, "l2": 3.0, "l1": 10.0}  # budgets of similar strength per norm


def _threat(norm: str, eps: float):
    return {"linf": Linf, "l2": L2, "l1": L1}[norm](eps=eps)


def _make(cls, threat, steps: int = 5, **kwargs):
    return cls(threat, **kwargs) if cls is FGSM else cls(threat, steps=steps, **kwargs)


def _robust(res, y, model, x) -> float:
    """Robust accuracy: correct on the clean input and not broken."""
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return float((correct & ~res.success).float().mean())


def _attacked(model, x, y):
    """The points the model classifies correctly (the ones an evaluation attacks)."""
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    return x[keep], y[keep]


# --- ball and box -----------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    norm=st.sampled_from(["linf", "l2", "l1"]),
    eps_frac=st.floats(0.0, 1.0),
    n=st.integers(1, 4),
    c=st.integers(1, 3),
    hw=st.integers(2, 5),
    k=st.integers(3, 6),
    seed=st.integers(0, 2**16),
    targeted=st.booleans(),
    early_stop=st.booleans(),
)
def test_every_iterate_and_result_stay_in_ball_and_box(
    data, norm, eps_frac, n, c, hw, k, seed, targeted, early_stop
):
    cls = data.draw(st.sampled_from([a for a in ALL if norm in a.norms]))
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * hw * hw, k))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 3)
    x = torch.rand(n, c, hw, hw, generator=gen)
    x[:, :, 0, 0] = 0.0  # pixels on the faces of the box
    x[:, :, -1, -1] = 1.0
    y = torch.randint(0, k, (n,), generator=gen)
    target = (y + torch.randint(1, k, (n,), generator=gen)) % k if targeted else None
    threat = _threat(norm, eps_frac * SCALE[norm])
    kwargs = {} if cls is FGSM else {"early_stop": early_stop}
    attack = _make(cls, threat, steps=4, **kwargs)
    # what the attack itself returns, before the base's safety projection
    oracle = Oracle(RuntimePolicy().runner(model), n, x.device)
    done = torch.zeros(n, dtype=torch.bool)
    raw = attack._run(RunContext(oracle, x, y, target, attack.make_generator(x.device), done))
    assert bool(threat.contains(raw, x).all())
    assert float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
    res = attack(model, x, y, target)
    assert bool(threat.contains(res.x_adv, x).all())
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    expected = pred != y if target is None else pred == target
    assert torch.equal(res.success, expected)


# --- closed form on the linear model ----------------------------------------------------------------
def _ce_grad(model, x, cls):
    """∇_x CE(Wx + b, cls) = Wᵀ(softmax(z) − e_cls), analytically."""
    w = model.weight.detach()
    z = x.flatten(1) @ w.T + model.bias.detach()
    p = z.softmax(1) - nn.functional.one_hot(cls, w.shape[0]).float()
    return (p @ w).reshape(x.shape)


def test_fgsm_linf_equals_closed_form_untargeted_and_targeted(linear_model):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 4, 4, generator=gen)
    with torch.no_grad():
        y = linear_model(x).argmax(1)  # every point is attacked
    eps = 0.1
    res = FGSM(Linf(eps))(linear_model, x, y)
    expected = (x + eps * _ce_grad(linear_model, x, y).sign()).clamp(0, 1)
    torch.testing.assert_close(res.x_adv, expected, rtol=0, atol=1e-6)
    target = (y + 1) % 3
    res_t = FGSM(Linf(eps))(linear_model, x, y, target=target)
    expected_t = (x - eps * _ce_grad(linear_model, x, target).sign()).clamp(0, 1)
    torch.testing.assert_close(res_t.x_adv, expected_t, rtol=0, atol=1e-6)


def test_fgsm_l2_steps_eps_along_the_normalized_gradient(linear_model):
    gen = torch.Generator().manual_seed(1)
    x = 0.3 + 0.4 * torch.rand(32, 1, 4, 4, generator=gen)  # far enough from the box's faces
    with torch.no_grad():
        y = linear_model(x).argmax(1)
    g = _ce_grad(linear_model, x, y)
    eps = 0.1
    expected = x + eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    res = FGSM(L2(eps))(linear_model, x, y)
    torch.testing.assert_close(res.x_adv, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(res.norm, torch.full((32,), eps), rtol=0, atol=1e-6)


# --- strength ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [BIM, PGD])
def test_success_rate_never_falls_as_eps_grows(cls, small_cnn, mnist_batch):
    x, y = mnist_batch[0][::4], mnist_batch[1][::4]
    with torch.no_grad():
        clean_error = float((small_cnn(x).argmax(1) != y).float().mean())
    rates = [cls(Linf(eps), steps=10)(small_cnn, x, y).success_rate for eps in (0.0, 0.05, 0.1, 0.2, 0.3)]
    assert rates[0] == pytest.approx(clean_error)
    assert all(a <= b for a, b in zip(rates, rates[1:], strict=False)), rates
    assert rates[-1] > rates[0] + 0.5  # the attack does something


def test_sweep_is_monotone_and_starts_as_an_independent_run(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:40], mnist_batch[1][:40]
    attack = PGD(Linf(0.3), steps=10)
    sweep = attack.sweep(small_cnn, x, y, epsilons=[0.15, 0.05])
    assert sweep.epsilons.tolist() == pytest.approx([0.05, 0.15])
    alone = attack.with_threat(Linf(0.05))(small_cnn, x, y).success
    assert torch.equal(sweep.success[0], alone)  # the smallest budget attacks every point, same seed
    assert bool((sweep.success[0] <= sweep.success[1]).all())
    assert bool((sweep.success[1] & ~sweep.success[0]).any())  # the larger budget breaks more


def test_pgd_never_reports_higher_robust_accuracy_than_fgsm(small_cnn, mnist_batch):
    x, y = mnist_batch[0][::4], mnist_batch[1][::4]
    threat = Linf(0.1)
    fgsm = _robust(FGSM(threat)(small_cnn, x, y), y, small_cnn, x)
    bim = _robust(BIM(threat, steps=20)(small_cnn, x, y), y, small_cnn, x)
    pgd = _robust(PGD(threat, steps=40)(small_cnn, x, y), y, small_cnn, x)
    assert pgd <= fgsm and bim <= fgsm
    assert pgd < fgsm  # 40 steps find strictly more on an undefended CNN


@pytest.mark.parametrize("cls", ITERATIVE)
def test_targeted_attacks_reach_the_target(cls, small_cnn, mnist_batch):
    x, y = _attacked(small_cnn, mnist_batch[0][::4], mnist_batch[1][::4])
    target = (y + 1) % 10
    res = cls(Linf(0.4), steps=40)(small_cnn, x, y, target=target)
    with torch.no_grad():
        pred = small_cnn(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred == target)
    assert res.success_rate >= 0.9


def test_pgd_l1_and_l2_break_points_within_budget(small_cnn, mnist_batch):
    x, y = _attacked(small_cnn, mnist_batch[0][::8], mnist_batch[1][::8])
    for threat in (L2(3.0), L1(15.0)):
        res = PGD(threat, steps=20)(small_cnn, x, y)
        assert bool(threat.contains(res.x_adv, x).all())
        assert res.success_rate > 0.5, threat


# --- the contract ------------------------------------------------------------------------------------
class Trainable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(64, 5)
        )

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("cls", ALL)
def test_model_mode_kept_and_parameters_get_no_grad(cls):
    torch.manual_seed(0)
    model = Trainable().train()
    model.net[4].eval()  # a module in its own mode must keep it too
    bn_stats = model.net[1].running_mean.clone()
    x = torch.rand(6, 1, 6, 6)
    y = torch.randint(0, 5, (6,))
    _make(cls, Linf(0.2))(model, x, y)
    assert model.training and model.net[1].training and not model.net[4].training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model.net[1].running_mean, bn_stats)  # attacked in eval mode


def test_deterministic_for_a_seed(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:30], mnist_batch[1][:30]
    a = PGD(Linf(0.1), steps=5, seed=3)(small_cnn, x, y)
    b = PGD(Linf(0.1), steps=5, seed=3)(small_cnn, x, y)
    c = PGD(Linf(0.1), steps=5, seed=4)(small_cnn, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert not torch.equal(a.x_adv, c.x_adv)
    d = PGD(Linf(0.1), steps=5, seed=99)(small_cnn, x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.x_adv, d.x_adv)  # an explicit generator overrides the seed


def test_early_stop_spends_no_queries_on_broken_points(small_cnn, mnist_batch):
    x, y = _attacked(small_cnn, mnist_batch[0][::4], mnist_batch[1][::4])
    steps = 20
    on = PGD(Linf(0.3), steps=steps)(small_cnn, x, y)
    off = PGD(Linf(0.3), steps=steps, early_stop=False)(small_cnn, x, y)
    # clean pass + one gradient per step + the final iterate's forward pass
    assert torch.equal(off.queries, torch.full_like(off.queries, steps + 2))
    assert bool((on.queries <= steps + 2).all())
    assert bool((on.queries[~on.success] == steps + 2).all())
    assert float(on.queries[on.success].float().mean()) < steps / 2
    assert on.success_rate >= 0.9 and off.success_rate >= 0.9


@pytest.mark.parametrize("early_stop", [True, False])
def test_restarts_never_make_a_point_worse(small_cnn, mnist_batch, early_stop):
    x, y = _attacked(small_cnn, mnist_batch[0][::2], mnist_batch[1][::2])
    one = PGD(Linf(0.08), steps=10, early_stop=early_stop)(small_cnn, x, y)
    three = PGD(Linf(0.08), steps=10, restarts=3, early_stop=early_stop)(small_cnn, x, y)
    assert bool((one.success <= three.success).all())  # kept per point, not per batch
    assert 0 < one.success_rate < 1


def test_tracker_keeps_first_success_then_highest_loss_not_the_last_iterate():
    x = torch.zeros(3, 1)
    tracker = BestTracker(x, torch.tensor([False, False, True]))
    idx = torch.tensor([0, 1])

    def offer(value, loss, adv):
        tracker.update(idx, torch.full((2, 1), value), torch.tensor(loss), torch.tensor(adv))

    offer(1.0, [0.5, 0.5], [False, False])
    offer(2.0, [0.2, 0.9], [False, False])  # point 0 got worse: keep 1.0; point 1 better: 2.0
    assert tracker.x_best[:, 0].tolist() == [1.0, 2.0, 0.0]
    offer(3.0, [0.1, 0.1], [True, False])  # a success beats any loss
    offer(4.0, [0.05, 0.05], [False, False])
    assert tracker.x_best[:, 0].tolist() == [3.0, 2.0, 0.0]
    offer(5.0, [0.7, 0.0], [True, False])  # without early stop: the successful iterate of highest loss
    assert tracker.x_best[:, 0].tolist() == [5.0, 2.0, 0.0]
    assert tracker.success.tolist() == [True, False, True]
    assert tracker.pending().tolist() == [1]


def test_mifgsm_result_does_not_depend_on_the_batch(small_cnn, mnist_batch):
    model = copy.deepcopy(small_cnn).double()
    x, y = mnist_batch[0][:12].double(), mnist_batch[1][:12]
    attack = MIFGSM(Linf(0.1))
    together = attack(model, x, y).x_adv
    alone = torch.cat([attack(model, x[i : i + 1], y[i : i + 1]).x_adv for i in range(len(x))])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-9)
    assert not torch.equal(together, x)


def test_mifgsm_without_momentum_is_bim(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:20], mnist_batch[1][:20]
    a = MIFGSM(Linf(0.1), decay=0.0)(small_cnn, x, y)
    b = BIM(Linf(0.1))(small_cnn, x, y)
    torch.testing.assert_close(a.x_adv, b.x_adv, rtol=0, atol=1e-6)


def test_default_step_sizes_follow_the_documented_rules():
    assert BIM(Linf(0.3), steps=10).alpha() == pytest.approx(0.03)
    assert PGD(Linf(0.3), steps=40).alpha() == pytest.approx(2.5 * 0.3 / 40)
    assert MIFGSM(Linf(0.3)).alpha() == pytest.approx(0.03)
    assert PGD(Linf(0.3), steps=40).with_threat(Linf(0.1)).alpha() == pytest.approx(2.5 * 0.1 / 40)
    madry = PGD.madry(Linf(0.3))
    assert (madry.steps, madry.step_size, madry.random_start) == (40, 0.01, True)
    kurakin = BIM.kurakin(Linf(16 / 255))
    assert (kurakin.steps, kurakin.step_size) == (20, pytest.approx(1 / 255))


# --- bad input ---------------------------------------------------------------------------------------
def test_bad_input_fails_loudly(linear_model):
    x = torch.rand(4, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(InputError, match="eps"):
        PGD(Linf(-0.1))
    with pytest.raises(InputError, match="steps"):
        PGD(Linf(0.1), steps=0)
    with pytest.raises(InputError, match="step_size"):
        BIM(Linf(0.1), step_size=-1.0)
    with pytest.raises(InputError, match="restarts"):
        PGD(Linf(0.1), restarts=0)
    with pytest.raises(InputError, match="loss"):
        PGD(Linf(0.1), loss="hinge")
    with pytest.raises(InputError, match="defined for"):
        FGSM(L1(1.0))
    with pytest.raises(InputError, match="target"):
        PGD(Linf(0.1))(linear_model, x, y, target=y)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        PGD(Linf(0.1))(linear_model, x * 2 + 0.5, y)
    probs = nn.Sequential(linear_model, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="probabilities"):
        FGSM(Linf(0.1))(probs, x, y)


# --- registry and CLI ---------------------------------------------------------------------------------
def test_registry_builds_the_gradient_attacks():
    assert isinstance(ar.attacks.create("bim", eps=0.1), BIM)
    assert isinstance(ar.attacks.create("i-fgsm", eps=0.1), BIM)
    assert isinstance(ar.attacks.create("mi-fgsm", norm="l2", eps=1.0), MIFGSM)
    pgd = ar.attacks.create("pgd", norm="l1", eps=5.0, steps=7)
    assert isinstance(pgd, PGD) and pgd.steps == 7 and isinstance(pgd.threat, L1)


def test_cli_lists_attacks_with_defaults():
    from advrobust.cli.main import cli

    out = CliRunner().invoke(cli, ["attacks", "*fgsm*"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    names = [line.split("\t")[0].split(" ")[0] for line in lines[1:]]
    assert names == ["fgsm", "i-fgsm", "mi-fgsm", "fgsm-rs"]
    assert "bim" in lines[2] and "steps=10" in lines[2] and "decay=1.0" in lines[3]
    assert CliRunner().invoke(cli, ["attacks", "no-such-*"]).exit_code != 0
