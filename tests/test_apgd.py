"""APGD and APGD-T (Croce & Hein 2020): schedule, strength and the attack contract."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import advrobust as ar
from advrobust.attacks.apgd import APGD, APGDT, APGDStep, checkpoints, halve_step
from advrobust.attacks.context import RunContext
from advrobust.attacks.gradient import PGD
from advrobust.attacks.iterative import Active
from advrobust.attacks.oracle import Oracle
from advrobust.errors import InputError
from advrobust.runtime import RuntimePolicy
from advrobust.threat import L1, L2, Linf
from test_attacks_gradient import _attacked, _robust


# --- the schedule ------------------------------------------------------------------------------------
def test_checkpoints_follow_the_paper():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (Croce & Hein 2020, §3.2), w_j = ceil(p_j · 100)
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]


def test_halving_conditions():
    inc = torch.tensor([10.0, 1.0, 10.0, 10.0])
    reduced = torch.tensor([False, False, False, True])
    f_check = torch.tensor([0.0, 0.0, 1.0, 1.0])
    f_max = torch.tensor([1.0, 1.0, 1.0, 1.0])
    # window 10, rho 0.75: point 1 has too few increases (1 < 7.5); point 2 stalled with an unchanged
    # step size; point 3 stalled but its step was just halved; point 0 improved with many increases
    assert halve_step(inc, 10, 0.75, reduced, f_check, f_max).tolist() == [False, True, True, False]


def _drive(losses: list[float], steps: int = 10) -> list[float]:
    """Run APGDStep on one 1-d point with a constant gradient and the given loss sequence."""
    rule = APGDStep(Linf(0.5), steps=steps, rho=0.75)
    x = torch.full((1, 4), 0.5)
    active = Active(index=torch.tensor([0]), x=x, x_cur=x.clone(), y=torch.tensor([0]), goal=None, aim=None)
    rule.init(active)
    etas = []
    for n, value in enumerate(losses):
        active.x_cur = rule.step(n, active, torch.ones(1, 4), torch.tensor([value]))
        etas.append(float(active.state["eta"][0]))
    return etas


def test_step_size_halves_only_when_progress_stalls():
    rising = _drive([float(i) for i in range(10)])
    assert rising == [1.0] * 10  # η^(0) = 2ε, never halved while the loss keeps increasing
    flat = _drive([1.0] * 10)
    # checkpoints 3, 5, 6, 7, ...: no increase at all -> halved at every checkpoint
    assert flat[:3] == [1.0, 1.0, 1.0] and flat[3] == 0.5 and flat[5] == 0.25 and flat[6] == 0.125


def test_halving_restarts_from_the_best_iterate():
    rule = APGDStep(Linf(0.5), steps=10, rho=0.75)
    x = torch.full((1, 2), 0.5)
    active = Active(index=torch.tensor([0]), x=x, x_cur=x.clone(), y=torch.tensor([0]), goal=None, aim=None)
    rule.init(active)
    grads = [torch.tensor([[1.0, -1.0]])] * 3 + [torch.tensor([[-1.0, 1.0]])]
    losses = [5.0, 1.0, 0.5, 0.2]  # the start was the best point
    for n, (g, f) in enumerate(zip(grads, losses, strict=True)):
        active.x_cur = rule.step(n, active, g, torch.tensor([f]))
    # at checkpoint 3 the point went back to x_max = x^(0) and stepped from there along ∇f(x^(0))
    assert torch.equal(active.state["x_max"], x)
    assert active.state["eta"].item() == 0.5
    assert bool(Linf(0.5).contains(active.x_cur, x).all())


# --- ball and box -------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2", "l1"]),
    eps_frac=st.floats(0.0, 1.0),
    n=st.integers(1, 4),
    k=st.integers(4, 6),
    seed=st.integers(0, 2**16),
    targeted=st.booleans(),
    cls=st.sampled_from([APGD, APGDT]),
)
def test_apgd_stays_in_ball_and_box(norm, eps_frac, n, k, seed, targeted, cls):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, k))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 3)
    x = torch.rand(n, 2, 3, 3, generator=gen)
    x[:, 0, 0, 0] = 1.0
    y = torch.randint(0, k, (n,), generator=gen)
    target = (y + torch.randint(1, k, (n,), generator=gen)) % k if targeted else None
    threat = {"linf": Linf(eps_frac), "l2": L2(3 * eps_frac), "l1": L1(10 * eps_frac)}[norm]
    attack = cls(threat, steps=6, early_stop=bool(seed % 2))
    ctx = RunContext(Oracle(RuntimePolicy().runner(model), n, x.device), x, y, target,
                     attack.make_generator(x.device), torch.zeros(n, dtype=torch.bool))
    raw = attack._run(ctx)
    assert bool(threat.contains(raw, x).all())
    res = attack(model, x, y, target)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y if target is None else pred == target)


# --- strength -----------------------------------------------------------------------------------------
def test_apgd_reports_at_most_pgd_robust_accuracy(small_cnn, mnist_batch):
    x, y = mnist_batch[0][::4], mnist_batch[1][::4]
    threat = Linf(0.15)
    pgd = _robust(PGD(threat, steps=40)(small_cnn, x, y), y, small_cnn, x)
    apgd = _robust(APGD(threat)(small_cnn, x, y), y, small_cnn, x)
    apgd_t = _robust(APGDT(threat, n_target_classes=3)(small_cnn, x, y), y, small_cnn, x)
    assert apgd <= pgd and apgd_t <= pgd
    assert 0 < pgd < 0.5  # a budget where the comparison means something


def test_targeted_apgd_reaches_the_target(small_cnn, mnist_batch):
    x, y = _attacked(small_cnn, mnist_batch[0][::8], mnist_batch[1][::8])
    target = (y + 3) % 10
    for attack in (APGD(Linf(0.4), steps=30), APGDT(Linf(0.4), steps=30)):
        res = attack(small_cnn, x, y, target=target)
        with torch.no_grad():
            pred = small_cnn(res.x_adv).argmax(1)
        assert torch.equal(res.success, pred == target)
        assert res.success_rate >= 0.9


def test_apgd_l2_breaks_points(small_cnn, mnist_batch):
    x, y = _attacked(small_cnn, mnist_batch[0][::8], mnist_batch[1][::8])
    res = APGD(L2(2.0), steps=30, loss="dlr")(small_cnn, x, y)
    assert bool(L2(2.0).contains(res.x_adv, x).all())
    assert res.success_rate > 0.5


# --- the contract ------------------------------------------------------------------------------------
def test_queries_early_stop_and_target_rounds(small_cnn, mnist_batch):
    x, y = _attacked(small_cnn, mnist_batch[0][:20], mnist_batch[1][:20])
    off = APGD(Linf(0.05), steps=10, early_stop=False)(small_cnn, x, y)
    assert torch.equal(off.queries, torch.full_like(off.queries, 12))  # clean + 10 gradients + final
    on = APGD(Linf(0.3), steps=10)(small_cnn, x, y)
    assert bool((on.queries[on.success] < 12).all()) and on.success_rate >= 0.9
    # APGD-T without early stop: clean + ranking forward + 2 target rounds of (10 gradients + final)
    t_off = APGDT(Linf(0.05), steps=10, n_target_classes=2, early_stop=False)(small_cnn, x, y)
    assert torch.equal(t_off.queries, torch.full_like(t_off.queries, 2 + 2 * 11))


def test_apgd_model_mode_grad_and_determinism(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:16], mnist_batch[1][:16]
    model = copy.deepcopy(small_cnn).train()  # the shared fixture may carry .grad from its training
    for p in model.parameters():
        p.grad = None
    a = APGD(Linf(0.1), steps=8, seed=1)(model, x, y)
    b = APGDT(Linf(0.1), steps=8, n_target_classes=2, seed=1)(model, x, y)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert torch.equal(a.x_adv, APGD(Linf(0.1), steps=8, seed=1)(model, x, y).x_adv)
    assert torch.equal(b.x_adv, APGDT(Linf(0.1), steps=8, n_target_classes=2, seed=1)(model, x, y).x_adv)


def test_apgd_bad_input(linear_model):
    x = torch.rand(3, 1, 4, 4)
    with torch.no_grad():
        y = linear_model(x).argmax(1)
    with pytest.raises(InputError, match="rho"):
        APGD(Linf(0.1), rho=1.5)
    with pytest.raises(InputError, match="n_target_classes"):
        APGDT(Linf(0.1), n_target_classes=0)
    with pytest.raises(InputError, match="4 classes"):
        APGDT(Linf(0.1))(linear_model, x, y)  # 3 classes: no targeted DLR
    assert len(APGD(Linf(0.1), loss="dlr", steps=3)(linear_model, x, y)) == 3  # DLR works with 3


def test_registry_presets():
    assert ar.attacks.create("apgd-dlr", eps=0.1).loss == "dlr"
    assert ar.attacks.create("apgd", eps=0.1).loss == "ce"
    assert isinstance(ar.attacks.create("apgd-t", norm="l2", eps=0.5), APGDT)
