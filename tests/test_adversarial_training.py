"""Adversarial training methods (PGD-AT, FGSM-RS, FGSM-EP, TRADES), eps warm-up and the
catastrophic-overfitting guard: properties that fail if the methods break."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advrobust as ar
from advrobust.attacks.base import MinimumNormAttack
from advrobust.errors import InputError
from advrobust.models.architectures import create as create_model
from advrobust.training.adversarial import (
    FGSMRS,
    PGDAT,
    TRADES,
    KLAttack,
    maximize,
    warmup_eps,
)
from advrobust.training.methods import Standard, Stop, create_method, method_names
from advrobust.training.overfitting import OverfittingGuard, ProbeRecord, detect_collapse
from advrobust.training.prior import FGSMEP
from conftest import train_with_method

EPS = 0.2


class ModeRecorder(nn.Module):
    """A tiny CNN-free classifier that records, at every forward, whether it ran in train mode."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.linear = nn.Linear(16, 3)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(3, 16, generator=gen))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.linear(x.flatten(1))


def _batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=gen), torch.arange(n) % 3


METHOD_FACTORIES = {
    "pgd-at": lambda eps: PGDAT(eps, steps=3, warmup=0.4),
    "fgsm-rs": lambda eps: FGSMRS(eps, warmup=0.4, guard_every=10),
    "fgsm-ep": lambda eps: FGSMEP(eps, warmup=0.4, guard_every=10),
    "trades": lambda eps: TRADES(eps, steps=3, warmup=0.4),
}

# forward passes of the outer loss (in train mode): x_adv; TRADES also x, FGSM-EP also its start
OUTER_FORWARDS = {"pgd-at": 1, "fgsm-rs": 1, "fgsm-ep": 2, "trades": 2}


# --- the inner maximization -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(METHOD_FACTORIES))
def test_inner_attack_leaves_grads_and_mode_alone(name):
    model = ModeRecorder().train()
    x, y = _batch()
    method = METHOD_FACTORIES[name](EPS)
    loss, logits = method.loss(model, x, y, progress=0.5)
    # the attack wrote no parameter gradient, ran in eval mode, and the model is back in train mode
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    outer = OUTER_FORWARDS[name]
    attack_modes, outer_modes = model.modes[:-outer], model.modes[-outer:]
    assert attack_modes and not any(attack_modes)
    assert all(outer_modes)
    assert loss.dim() == 0 and logits.shape == (x.shape[0], 3)
    # the outer loss alone makes the parameter gradients
    loss.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())


def test_wrapped_model_is_attacked_through_its_module():
    inner = ModeRecorder().train()
    x, y = _batch()
    loss, _ = PGDAT(EPS, steps=2).loss(nn.DataParallel(inner), x, y, progress=1.0)
    # steps + final evaluation on the inner module (eval mode), then the outer forward (train mode)
    assert inner.modes == [False, False, False, True]
    assert all(p.grad is None for p in inner.parameters()) and loss.requires_grad


def test_maximize_attacks_misclassified_points_too(linear_model):
    x, y = _batch()
    wrong = linear_model(x).argmax(1) != y
    assert bool(wrong.any()) and bool((~wrong).any())
    attack = ar.attacks.create("pgd", eps=EPS, steps=5, early_stop=False)
    evaluated = attack(linear_model, x, y).x_adv
    trained = maximize(attack, linear_model, x, y)
    # an evaluation leaves misclassified points alone; training must push their loss up too
    assert torch.equal(evaluated[wrong], x[wrong])
    assert bool(ar.Linf(eps=EPS).contains(trained, x).all())
    ce = lambda inp: F.cross_entropy(linear_model(inp), y, reduction="none")  # noqa: E731
    assert bool((ce(trained)[wrong] > ce(x)[wrong] + 1e-4).all())


def test_fgsm_rs_step_is_wong_algorithm_3(linear_model):
    """Recompute Algorithm 3 independently: δ ~ U(−ε, ε) (inside the box), one signed step of
    α = 1.25·ε, clip δ to [−ε, ε] and x + δ to [0, 1]."""
    x, y = _batch()
    eps = 0.1
    torch.manual_seed(7)
    got = FGSMRS(eps, guard=False).perturb(linear_model, x, y, progress=1.0)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
    delta = (2 * torch.rand(x.shape, generator=gen) - 1) * eps
    delta = (x + delta).clamp(0, 1) - x
    xv = (x + delta).requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(linear_model(xv), y, reduction="sum"), xv)
    delta = (delta + 1.25 * eps * grad.sign()).clamp(-eps, eps)
    expected = (x + delta).clamp(0, 1)
    assert torch.allclose(got, expected, atol=1e-6)


def _two_class_linear() -> nn.Module:
    """A 2-class linear model: CE's input gradient is ``(p₁ − [y = 1])·(w₁ − w₀)``, so its sign per
    pixel is the same at every input (flipped for y = 1)."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


def test_fgsm_ep_first_visit_is_fgsm_rs():
    """An example without a prior starts at a uniform random point, as FGSM-RS: the same draws give
    the same adversarial point, stored as the example's prior."""
    model, (x, y) = _two_class_linear(), _batch()
    y = y % 2
    torch.manual_seed(7)
    expected = FGSMRS(0.1, guard=False).perturb(model, x, y, progress=1.0)
    method = FGSMEP(0.1, guard=False)
    torch.manual_seed(7)
    method.loss(model, x, y, 1.0, index=torch.arange(len(y)))
    prior, seen = method._rows(torch.arange(len(y)), x)
    assert bool(seen.all())
    assert torch.allclose(x + prior, expected, atol=1e-3)  # the store is half precision


def test_fgsm_ep_starts_each_example_where_its_last_step_ended():
    """One step of 0.1·ε from a fresh random start puts few pixels on the ball's face; carried over
    from visit to visit, 20 such steps put every pixel of every trained example at ``x + ε·sign(∇)``
    (x = 0.5 keeps the box out of the way). Rows never trained have no prior."""
    model, eps = _two_class_linear(), 0.2
    x, y = torch.full((6, 1, 4, 4), 0.5), torch.tensor([0, 1, 0, 1, 0, 1])
    rows = torch.tensor([0, 2, 4, 6, 8, 10])
    method = FGSMEP(eps, step_size=0.1 * eps, guard=False)
    for _ in range(20):
        method.loss(model, x, y, 1.0, index=rows)
    prior, seen = method._rows(torch.arange(11), x)
    xv = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(xv), y, reduction="sum"), xv)
    assert torch.equal(seen, torch.isin(torch.arange(11), rows))
    assert torch.allclose(prior[rows], eps * grad.sign(), atol=1e-3)
    assert torch.equal(prior[~seen], torch.zeros_like(prior[~seen]))


def test_named_attack_is_built_to_keep_maximizing():
    method = PGDAT(0.1, attack="mi-fgsm", steps=4)
    assert method.attack.name == "mi-fgsm" and method.attack.steps == 4
    assert method.attack.early_stop is False
    with pytest.raises(InputError, match="no option"):
        PGDAT(0.1, attack="fgsm", steps=4)
    with pytest.raises(InputError, match="configure the attack instance"):
        PGDAT(attack=ar.attacks.create("pgd", eps=0.1), steps=3)


@pytest.mark.parametrize("name", ["fgsm", "i-fgsm", "mi-fgsm", "apgd-ce", "apgd-dlr"])
def test_any_fixed_budget_attack_can_be_the_inner_maximization(name, linear_model):
    x, y = _batch()
    method = PGDAT(0.1, attack=name)
    x_adv = method.perturb(linear_model, x, y, progress=1.0)
    assert bool(ar.Linf(eps=0.1).contains(x_adv, x).all()) and not torch.equal(x_adv, x)
    with torch.no_grad():
        clean, _ = Standard().loss(linear_model, x, y, 1.0)
        adversarial, _ = method.loss(linear_model, x, y, 1.0)
    assert float(adversarial) > float(clean)
    assert method.describe()["attack"]["name"] == method.attack.name


def test_minimum_norm_attack_is_refused():
    class Nearest(MinimumNormAttack):
        name = "nearest"

        def _run(self, ctx):
            return ctx.x

    with pytest.raises(InputError, match="fixed-budget"):
        PGDAT(attack=Nearest(ar.L2()))


# --- eps warm-up -------------------------------------------------------------------------------------
def test_warmup_schedule_values():
    assert [warmup_eps(0.3, p, 0.5) for p in (0.0, 0.25, 0.5, 0.75, 1.0)] == pytest.approx(
        [0.0, 0.15, 0.3, 0.3, 0.3]
    )
    assert warmup_eps(0.3, 0.0, 0.0) == 0.3
    with pytest.raises(InputError, match="warmup"):
        PGDAT(0.3, warmup=1.5)


@pytest.mark.parametrize("name", sorted(METHOD_FACTORIES))
def test_warmup_applies_to_the_attack(name, linear_model):
    x, y = _batch()
    method = METHOD_FACTORIES[name](0.3)
    method.warmup = 0.5
    assert torch.equal(method.perturb(linear_model, x, y, progress=0.0), x)
    for progress, eps in ((0.25, 0.15), (0.9, 0.3)):
        x_adv = method.perturb(linear_model, x, y, progress)
        size = ar.Linf().norm(x_adv - x)
        # inside the warm-up ball, and reaching its edge (the l∞ steps are large enough)
        assert bool((size <= eps + 1e-6).all()) and bool((size >= 0.9 * eps).all())


# --- TRADES ----------------------------------------------------------------------------------------
def test_trades_with_beta_zero_is_standard_cross_entropy(linear_model):
    x, y = _batch()
    loss, logits = TRADES(0.3, beta=0.0, steps=2).loss(linear_model, x, y, progress=1.0)
    grads = torch.autograd.grad(loss, list(linear_model.parameters()))
    ref_loss, ref_logits = Standard().loss(linear_model, x, y, progress=1.0)
    ref_grads = torch.autograd.grad(ref_loss, list(linear_model.parameters()))
    assert torch.allclose(loss, ref_loss) and torch.allclose(logits, ref_logits)
    assert all(torch.allclose(a, b) for a, b in zip(grads, ref_grads, strict=True))


def test_trades_kl_attack_increases_the_divergence(linear_model):
    x, y = _batch()
    threat = ar.Linf(eps=0.2)
    x_adv = maximize(KLAttack(threat, steps=10), linear_model, x, y)
    assert bool(threat.contains(x_adv, x).all())

    def kl(inp: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(linear_model(x), 1)
        return F.kl_div(F.log_softmax(linear_model(inp), 1), log_p, reduction="none", log_target=True).sum(1)

    start = threat.project(x + 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)), x)
    assert bool((kl(x_adv) > kl(start) + 1e-3).all())
    with torch.no_grad():
        loss, logits = TRADES(0.2, beta=6.0).loss(linear_model, x, y, progress=1.0)
        assert float(loss) > float(F.cross_entropy(logits, y)) + 1e-3


# --- the catastrophic-overfitting detector ------------------------------------------------------------
def _records(pgd: list[float], fgsm: list[float]) -> list[ProbeRecord]:
    return [ProbeRecord(10 * (i + 1), 0.9, f, p) for i, (p, f) in enumerate(zip(pgd, fgsm, strict=True))]


def test_detector_is_quiet_on_a_healthy_history():
    pgd = [0.05, 0.2, 0.35, 0.33, 0.45, 0.5, 0.48, 0.55]
    assert detect_collapse(_records(pgd, [p + 0.15 for p in pgd])) is None
    # a drop of exactly the threshold is tolerated
    assert detect_collapse(_records([0.5, 0.3], [0.6, 0.4])) is None


@pytest.mark.parametrize(
    ("pgd", "fgsm", "index", "words"),
    [
        ([0.2, 0.45, 0.5, 0.1], [0.3, 0.5, 0.6, 0.9], 3, "fell from 50.0% to 10.0%"),  # Wong et al.'s drop
        ([0.3, 0.6, 0.5, 0.45, 0.38], [0.4, 0.7, 0.6, 0.6, 0.6], 4, "fell from 60.0%"),  # a slide from the best
        ([0.02, 0.01], [0.3, 0.7], 1, "gradient masking"),  # near 0 while FGSM stays high
        ([0.2, 0.34], [0.3, 0.94], 1, "gradient masking"),  # a real FGSM-RS run; APGD then left 5%
    ],
)
def test_detector_fires_on_constructed_collapses(pgd, fgsm, index, words):
    collapse = detect_collapse(_records(pgd, fgsm))
    assert collapse is not None and collapse.index == index and words in collapse.reason


def _separable(n: int = 64) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """Two classes split by the mean pixel (far from the boundary), and a linear model that solves it."""
    gen = torch.Generator().manual_seed(3)
    y = torch.arange(n) % 2
    x = (0.25 + 0.5 * y.float()).view(-1, 1, 1, 1) + 0.05 * (torch.rand(n, 1, 4, 4, generator=gen) - 0.5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-1.0] * 16, [1.0] * 16]))
        model[1].bias.copy_(torch.tensor([8.0, -8.0]))  # logit margin 2·Σx − 16: ±8 at the means
    return x, y, model


def test_guard_stops_and_restores_the_best_weights():
    x, y, model = _separable()
    method = FGSMRS(0.05, guard_action="restore", probe_size=32)
    method.loss(model, x, y, progress=0.0)
    assert method.on_epoch_end(None) is None  # healthy: robust at eps 0.05
    good = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1)  # the "collapse": every probe point now wrong
    method.loss(model, x, y, progress=0.5)
    verdict = method.on_epoch_end(None)
    assert isinstance(verdict, Stop) and "catastrophic overfitting" in verdict
    assert all(torch.equal(v, good[k]) for k, v in model.state_dict().items())
    assert method.guard.records[0].pgd == 1.0 and method.guard.records[1].pgd == 0.0


def test_guard_warn_reports_once_and_keeps_weights():
    x, y, model = _separable()
    method = FGSMRS(0.05, guard_action="warn", probe_size=32)
    method.loss(model, x, y, progress=0.0)
    method.on_epoch_end(None)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1)
    flipped = model[1].weight.clone()
    verdict = method.on_epoch_end(None)
    assert isinstance(verdict, str) and not isinstance(verdict, Stop)
    assert torch.equal(model[1].weight, flipped)
    assert method.on_epoch_end(None) is None


def test_guard_checks_every_k_batches():
    x, y, model = _separable()
    guard = OverfittingGuard(ar.Linf(eps=0.05), probe_size=16, every=2)
    for _ in range(5):
        guard.observe(model, x, y)
    assert [r.batches for r in guard.records] == [2, 4]
    assert guard.records[0].clean == 1.0


def test_guard_waits_for_the_end_of_the_warmup():
    x, y, model = _separable()
    method = FGSMRS(0.05, warmup=0.5, guard_every=1, probe_size=8)
    method.loss(model, x, y, progress=0.2)  # eps 0.02: not watched
    assert method.guard.records == []
    method.loss(model, x, y, progress=0.6)
    assert [r.batches for r in method.guard.records] == [1]
    assert torch.equal(method.guard._probe[0], x[:8])


# --- registration ---------------------------------------------------------------------------------
def test_methods_are_registered_and_describe_themselves():
    assert {"pgd-at", "fgsm-rs", "fgsm-ep", "trades"} <= set(method_names())
    meta = create_method("trades", eps=0.1, beta=1.0).describe()
    assert meta["method"] == "trades" and meta["eps"] == 0.1 and meta["beta"] == 1.0
    meta = create_method("pgd-at", eps=0.3, steps=7).describe()
    assert meta["attack"]["name"] == "pgd" and meta["attack"]["steps"] == 7
    assert create_method("fgsm-rs", eps=0.3).describe()["guard"]["action"] == "restore"


# --- training works: robust accuracy rises --------------------------------------------------------
def _robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    res = ar.attacks.create("pgd", eps=EPS, steps=20)(model, x, y)
    return 1.0 - res.success_rate


@pytest.fixture(scope="module")
def train_subset(mnist_split) -> tuple[torch.Tensor, torch.Tensor]:
    """2000 training digits in random order (the split is sorted by class)."""
    x_train, y_train, _, _ = mnist_split
    idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:2000]
    return x_train[idx], y_train[idx]


@pytest.fixture(scope="module")
def standard_robust(train_subset, mnist_batch) -> float:
    return _robust_accuracy(train_with_method(Standard(), *train_subset), *mnist_batch)


@pytest.mark.parametrize("name", sorted(METHOD_FACTORIES))
def test_adversarial_training_beats_standard_under_pgd(name, train_subset, mnist_batch, standard_robust):
    method = METHOD_FACTORIES[name](EPS)
    model = train_with_method(method, *train_subset)
    robust = _robust_accuracy(model, *mnist_batch)
    assert robust >= standard_robust + 0.2, (name, robust, standard_robust)
    if name in ("fgsm-rs", "fgsm-ep"):  # a healthy run: the guard watched (after the warm-up) and stayed quiet
        assert len(method.guard.records) >= 3 and method.on_epoch_end(None) is None


# --- through the engine -----------------------------------------------------------------------------
def _killed(method: type) -> type:
    """``method`` that 'kills' its process (KeyboardInterrupt) once, when the second half of training starts."""

    class Killed(method):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.armed = True

        def loss(self, model, x, y, progress, **rows):
            if self.armed and progress >= 0.5:
                self.armed = False
                raise KeyboardInterrupt
            return super().loss(model, x, y, progress, **rows)

    return Killed


RESUMABLE = {
    "pgd-at": (PGDAT, {"steps": 2, "warmup": 0.5}),
    # the guard checks every 4 batches from the first: its records span the kill
    "fgsm-rs": (FGSMRS, {"guard_every": 4, "guard_action": "warn", "probe_size": 16}),
    # the priors of epoch 1 are in the checkpoint: epoch 2 starts from them as if never stopped
    "fgsm-ep": (FGSMEP, {"guard_every": 4, "guard_action": "warn", "probe_size": 16}),
}


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_engine_resumes_adversarial_training_exactly(name, train_subset, tmp_path):
    """Random starts come from the engine-seeded global RNG: a killed and resumed run ends with the
    weights of the uninterrupted one; FGSM-RS's guard goes on with its probe and checks as if never
    stopped; the checkpoint says how the model was trained."""
    from advrobust.models import fingerprint
    from advrobust.training import fit
    from advrobust.training.engine import STATE_FILE, load_state

    x, y = train_subset
    train = type("Data", (), {"x": x[:320], "y": y[:320]})()
    settings = {"epochs": 2, "batch_size": 32, "lr": 0.005, "optimizer": "adam", "seed": 0}
    method, kwargs = RESUMABLE[name]

    def model() -> nn.Module:
        return create_model("mnist-cnn", 10, (1, 28, 28), seed=0, width=4, hidden=16)

    whole, whole_method = model(), method(0.2, **kwargs)
    expected = fit(whole, train, method=whole_method, **settings)
    killed = model()
    with pytest.raises(KeyboardInterrupt):
        fit(killed, train, method=_killed(method)(0.2, **kwargs), checkpoint_dir=tmp_path, **settings)
    state = load_state(tmp_path / STATE_FILE)
    assert state["epoch"] == 1
    assert state["config"]["method"]["method"] == name and state["config"]["method"]["eps"] == 0.2
    resumed, resumed_method = model(), method(0.2, **kwargs)
    history = fit(resumed, train, method=resumed_method, checkpoint_dir=tmp_path, **settings)
    assert fingerprint(resumed) == fingerprint(whole)
    assert [r.train_loss for r in history.records] == [r.train_loss for r in expected.records]
    if name == "fgsm-ep":
        assert bool(resumed_method._seen.all()) and torch.equal(resumed_method._prior, whole_method._prior)
    if name in ("fgsm-rs", "fgsm-ep"):
        assert len(whole_method.guard.records) >= 5
        assert resumed_method.guard.records == whole_method.guard.records
        assert torch.equal(resumed_method.guard._probe[0], whole_method.guard._probe[0])
