"""The fast path (channels-last weights, cache-sized chunks) computes the model's own function, never
changes the user's module, falls back when a model cannot take the layout, and never decides a
reported success."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.oracle import Oracle
from advrobust.runtime import FrozenCopies, Runner, RuntimePolicy
from advrobust.runtime.chunks import CPU_ROWS
from advrobust.runtime.fast_forward import FROZEN_AFTER_ROWS, FastForward
from advrobust.runtime.randomness import check_randomness, replay_point
from advrobust.transforms import Geometric
from advrobust.transforms.model import TransformedModel


def _cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    ).eval()


class _ViewNet(nn.Module):
    """A ``forward`` that calls ``.view`` on a convolution's output: fails on channels-last strides."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


class _LayoutSensitive(nn.Module):
    """Returns different scores when its convolution output is channels-last (no real model does
    this; it stands for a fast path that would compute another function)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.inner(x)
        h = self.inner[0](x)
        if not h.is_contiguous():  # channels-last activation
            z = z.roll(1, dims=1)
        return z


class _RowCounter(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.inner(x)


@pytest.fixture
def build_at_once(monkeypatch):
    """Switch to the frozen copy on the first pass without gradients (the default waits for 8k rows)."""
    monkeypatch.setattr("advrobust.runtime.fast_forward.FROZEN_AFTER_ROWS", 1)


def _x(n: int = 300) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(2))


def test_fast_path_computes_the_same_scores_and_gradients():
    model, x = _cnn(), _x()
    fast = FastForward(model)
    with torch.no_grad():
        z_fast, z_plain = fast(x), model(x)
    assert fast.layout == "channels_last"
    torch.testing.assert_close(z_fast, z_plain, rtol=1e-4, atol=1e-5)
    y = z_plain.argmax(1)
    grads = []
    for f in (fast, model):
        xv = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(f(xv), y, reduction="sum"), xv)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_the_users_module_is_left_untouched():
    model = _cnn()
    before = {n: (p.data_ptr(), p.stride(), p.detach().clone()) for n, p in model.named_parameters()}
    ar.attacks.PGD(ar.Linf(eps=0.1), steps=3)(model, _x(20), torch.zeros(20, dtype=torch.long))
    for n, p in model.named_parameters():
        ptr, stride, value = before[n]
        assert (p.data_ptr(), p.stride()) == (ptr, stride), n
        assert torch.equal(p.detach(), value), n
        assert p.grad is None


def test_large_batches_are_split_into_cache_sized_chunks_in_order():
    counter = _RowCounter(_cnn())
    x = _x(2 * CPU_ROWS + 7)
    with torch.no_grad():
        out = FastForward(counter)(x)
        expected = counter.inner(x)
    assert max(counter.rows) <= CPU_ROWS and sum(counter.rows) >= len(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [_ViewNet, _LayoutSensitive], ids=["fails-on-the-layout", "other-function"])
def test_the_plain_model_is_used_when_the_fast_path_fails_or_differs(make):
    model, x = make().eval(), _x(16)
    fast = FastForward(model)
    with torch.no_grad():
        out = fast(x)
        assert fast.layout == "default"
        torch.testing.assert_close(out, model(x))


class _Noisy(nn.Module):
    """A randomized forward pass (as in randomized-smoothing defenses): no two passes agree."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _cnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.1 * torch.randn_like(x))


@pytest.mark.parametrize("make", [_Noisy, lambda: TransformedModel(_cnn(), Geometric(rotation=20), draws=2)],
                         ids=["global-generator", "own-generator"])
def test_a_randomized_model_takes_the_fast_path_checked_on_the_same_draws(make):
    model, x = make().eval(), _x(16)
    fast = FastForward(model)
    with torch.no_grad():
        assert check_randomness(model, x).randomized  # two passes differ ...
        fast(x)
        assert fast.layout == "channels_last"  # ... yet the fast path was checked on one draw, and kept
        replay = replay_point(model)
        out = fast(x)
        replay()
        plain = model(x)
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5)  # the same function, draw for draw


def test_reported_successes_are_decided_by_the_plain_model(monkeypatch):
    """Even a fast path that slipped through the first-call check (here: the check is skipped, and
    the layout-sensitive model scores differently in it) cannot make the attack report a success the
    plain model does not show."""
    monkeypatch.setattr(FastForward, "_check", lambda self, x: setattr(self, "_checked", True))
    model, x = _LayoutSensitive().eval(), _x(40)
    y = model(x).argmax(1)
    res = ar.attacks.FGSM(ar.Linf(eps=0.05))(model, x, y)
    with torch.no_grad():
        plain_wrong = model(res.x_adv).argmax(1) != y
    assert torch.equal(res.success, plain_wrong)


def test_the_policy_picks_the_fast_path_for_cpu_modules_only():
    assert isinstance(RuntimePolicy().runner(_cnn()), FastForward)
    for runner in (RuntimePolicy(fast=False).runner(_cnn()), RuntimePolicy().runner(lambda x: x.flatten(1))):
        assert type(runner) is Runner and runner.layout == "default" and not runner.frozen


def test_the_environment_switch_turns_the_fast_path_off(monkeypatch, build_at_once):
    monkeypatch.setenv("ADVROBUST_FAST_FORWARD", "0")
    runner = RuntimePolicy().runner(_cnn())
    with torch.no_grad():
        runner(_x(16))
    assert type(runner) is Runner and runner.layout == "default" and not runner.frozen


def test_callables_and_black_boxes_are_called_as_they_are():
    calls = []

    def scores(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x.flatten(1)[:, :10]

    oracle = Oracle(RuntimePolicy().runner(scores), 300, torch.device("cpu"))
    oracle.logits(_x(300))
    assert calls == [300] and oracle.runner.layout == "default"


@pytest.mark.parametrize("arch", ["mnist-cnn", "small-resnet"])
def test_registered_architectures_take_the_fast_path(arch):
    model = ar.models.create(arch, num_classes=10, input_shape=(1, 28, 28), seed=0).eval()
    fast = FastForward(model)
    x = _x(8)
    with torch.no_grad():
        out = fast(x)
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)
    assert fast.layout == "channels_last"


# --- the frozen copy for passes without gradients (advrobust.runtime.frozen) ---------------------


class _Branchy(nn.Module):
    """Data-dependent control flow: a trace records only the branch its example took."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = _cnn(0), _cnn(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) if bool(x.mean() > 0.5) else self.b(x)


@pytest.mark.parametrize("arch", ["mnist-cnn", "small-resnet"])
def test_passes_without_gradients_run_on_a_frozen_copy_with_the_same_scores(arch, build_at_once):
    model = ar.models.create(arch, num_classes=10, input_shape=(1, 28, 28), seed=0).eval()
    fast, x = FastForward(model), _x(2 * CPU_ROWS + 5)
    with torch.no_grad():
        out = fast(x)
        assert fast.frozen
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)
    xv = x[:4].clone().requires_grad_(True)
    assert fast(xv).requires_grad  # passes with gradients keep the module's own graph


def test_the_frozen_copy_waits_until_enough_rows_ran_without_gradients():
    fast = FastForward(_cnn())
    with torch.no_grad():
        fast(_x(CPU_ROWS))
        assert not fast.frozen
        fast(_x(FROZEN_AFTER_ROWS))
    assert fast.frozen


def test_a_traced_branch_is_never_used_for_inputs_that_take_the_other_one(build_at_once):
    model, dark = _Branchy().eval(), _x(16) * 0.2  # mean < 0.5: branch b
    fast = FastForward(model)
    with torch.no_grad():
        fast(dark)
        assert not fast.frozen
        bright = 1 - dark  # mean > 0.5: branch a
        torch.testing.assert_close(fast(bright), model(bright))


def test_a_copy_that_computes_other_scores_is_rejected(build_at_once):
    fast = FastForward(_Noisy().eval())
    with torch.no_grad():
        fast(_x(16))
    assert not fast.frozen


def test_a_copy_is_rebuilt_when_the_weights_change(build_at_once):
    model, x, copies = _cnn(), _x(32), FrozenCopies()
    with torch.no_grad():
        FastForward(model, copies=copies)(x)
        model[0].weight.mul_(-1)  # in place, as an optimizer step does
        fast = FastForward(model, copies=copies)
        out = fast(x)
        assert fast.frozen
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)


def test_a_copy_is_not_used_once_a_module_is_put_in_training_mode(build_at_once):
    """Batch norm in training mode normalizes with each batch's own statistics: the copy built in eval
    mode is another function then, and no copy of the training-mode model passes the check."""
    model = ar.models.create("small-resnet", num_classes=10, input_shape=(1, 28, 28), seed=0).eval()
    copies = FrozenCopies()
    with torch.no_grad():
        FastForward(model, copies=copies)(_x(16))
        model.stem[1].train()
        fast = FastForward(model, copies=copies)
        fast(_x(16))
    assert not fast.frozen and model.stem[1].training


def test_the_switch_to_a_frozen_copy_does_not_depend_on_earlier_attacks():
    """A copy cached by an earlier attack saves the build, never the rows before the switch: the
    paths round differently, so an attack must not run otherwise because of what ran before it."""
    model, copies = _cnn(), FrozenCopies()
    with torch.no_grad():
        first = FastForward(model, copies=copies)
        first(_x(FROZEN_AFTER_ROWS))
        second = FastForward(model, copies=copies)
        second(_x(16))
    assert first.frozen and not second.frozen


def test_an_attack_run_twice_gives_the_same_result(monkeypatch):
    monkeypatch.setattr("advrobust.runtime.fast_forward.FROZEN_AFTER_ROWS", 200)  # switch mid-attack
    model, x = _cnn(), _x(24)
    y = model(x).argmax(1)
    attack = ar.attacks.Square(ar.Linf(eps=0.1), queries=60)
    a, b = attack(model, x, y), attack(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
