"""Shared fixtures: tiny models and data so the suite runs in minutes on 2 CPU cores.

* ``linear_model``: an affine classifier ``z = W x + b`` on 1×4×4 inputs, for closed-form checks.
* ``mnist_batch``: 200 stratified test digits (20 per class) of the built-in mnist-5k data.
* ``small_cnn``: a small CNN trained for a few seconds on mnist-5k (cached between runs).
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

import pytest
import torch
from torch import nn

torch.set_num_threads(int(os.environ.get("ADVROBUST_TEST_THREADS", "1")))


class Linear(nn.Module):
    """``z = W·flatten(x) + b``: the closed-form case of every attack."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


@pytest.fixture
def linear_model() -> Linear:
    gen = torch.Generator().manual_seed(1234)
    d, k = 16, 3
    return Linear(torch.randn(k, d, generator=gen), torch.randn(k, generator=gen) * 0.1, (1, 4, 4))


def _mnist_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The library's own mnist-5k split (400 train / 100 test per digit), as tensors."""
    from advrobust.data import load

    train, test = load("mnist-5k", split="train"), load("mnist-5k", split="test")
    return train.x, train.y, test.x, test.y


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="session")
def mnist_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _mnist_split()


@pytest.fixture(scope="session")
def mnist_batch(mnist_split) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x_test, y_test = mnist_split
    idx = torch.cat([(y_test == c).nonzero().squeeze(1)[:20] for c in range(10)])
    return x_test[idx], y_test[idx]


@pytest.fixture(scope="session")
def small_cnn(mnist_split, pytestconfig) -> SmallCNN:
    """A CNN at ~96% test accuracy on mnist-5k, trained once and cached in pytest's cache dir.

    A file lock makes the first xdist worker train it and the others wait and load the same weights:
    two workers training their own copies got slightly different models (float order), and tests
    near a threshold then depended on which worker ran them.

    ``ADVROBUST_TEST_MODEL_SEED=N`` trains another model: a test that passes for one seed only is
    testing that model, not the attack.
    """
    seed = int(os.environ.get("ADVROBUST_TEST_MODEL_SEED", "0"))
    path = pytestconfig.cache.mkdir("advrobust") / f"small_cnn_v3_seed{seed}.pt"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            model = _train(*mnist_split[:2], seed=seed)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, path)
    model = SmallCNN()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _train(x_train: torch.Tensor, y_train: torch.Tensor, seed: int = 0) -> SmallCNN:
    """Train from weights drawn after seeding, so the model depends on ``seed`` alone and not on
    which tests consumed the global generator before (CI once got a different model that way)."""
    torch.manual_seed(seed)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(4):
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_train[b]), y_train[b]).backward()
            opt.step()
    model.zero_grad(set_to_none=True)  # attack tests check that parameters end with grad None
    return model


def train_with_method(method: Any, x: torch.Tensor, y: torch.Tensor, epochs: int = 1) -> nn.Module:
    """Adam steps (batches of 32) of a training ``method`` (its ``loss``) on a small CNN (width 8,
    64 hidden units), seeded: the model depends on the method and the data alone."""
    from advrobust.models.architectures import create as create_model

    torch.manual_seed(0)
    model = create_model("mnist-cnn", 10, (1, 28, 28), seed=0, width=8, hidden=64).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    order = torch.cat([torch.randperm(len(x)) for _ in range(epochs)]).split(32)
    for step, b in enumerate(order):
        rows = {"index": b} if getattr(method, "wants_index", False) else {}  # per-example state (FGSM-EP)
        loss, _ = method.loss(model, x[b], y[b], step / len(order), **rows)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="session")
def pgd_at_cnn(mnist_split) -> nn.Module:
    """A small CNN adversarially trained with PGD-AT at l∞ 0.2 (3 steps, 4 epochs on 2,000 digits,
    about 10 s): ~93% clean, ~63% robust to PGD-20 at 0.2 on the test digits."""
    from advrobust.training.adversarial import PGDAT

    x_train, y_train, _, _ = mnist_split
    idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:2000]
    return train_with_method(PGDAT(0.2, steps=3, warmup=0.3), x_train[idx], y_train[idx], epochs=4)
