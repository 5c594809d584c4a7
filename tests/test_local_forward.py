"""The receptive-field forward of one-pixel edits (advrobust.runtime.local_forward): the same function
as the model on every pixel, refused for models it cannot compute exactly, and used by One-Pixel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import advrobust as ar
from advrobust.attacks.one_pixel import OnePixel
from advrobust.attacks.oracle import Oracle
from advrobust.attacks.pixel_edits import PixelEdits
from advrobust.models.architectures import create
from advrobust.models.normalize import with_normalization
from advrobust.runtime import RuntimePolicy
from advrobust.runtime import local_forward as lf
from advrobust.tensors import painted_copies


class Everything(nn.Module):
    """Each supported layer kind, on a non-square RGB input: strides, dilation, padded max- and
    average-pools, a max-pool over negative values (so −∞ padding matters), batch norm, functional
    activations and ``torch.flatten``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.pool1 = nn.MaxPool2d(3, stride=1, padding=1)  # before any ReLU: inputs may be negative
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, (3, 5), stride=2, padding=(2, 1), dilation=(2, 1), bias=False)
        self.pool2 = nn.AvgPool2d(3, stride=2, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.fc1 = nn.Linear(8 * 8 * 6, 20)
        self.fc2 = nn.Linear(20, 5)
        self.register_buffer("shift", torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool1(self.conv1(x * 2.0 - self.shift))
        h = self.act(self.pool2(self.conv2(torch.tanh(self.bn(h)))))
        return self.fc2(F.relu(self.fc1(torch.flatten(h, 1))))


def _randomized_batch_norm(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def _every_edit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pixel of every image, set to random values."""
    n, c, h, w = x.shape
    img = torch.arange(n).repeat_interleave(h * w)
    pos = torch.arange(h * w).repeat(n)
    vals = torch.rand(len(img), c, generator=torch.Generator().manual_seed(2))
    return img, pos, vals


MODELS = {
    "default mnist-cnn, normalized": lambda: (with_normalization(
        create("mnist-cnn", 10, (1, 28, 28), seed=0, width=8), [0.13], [0.31]).eval(), (1, 28, 28)),
    "every layer kind, 3x29x23": lambda: (_randomized_batch_norm(Everything()), (3, 29, 23)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_the_local_forward_is_the_model_on_every_pixel(name):
    torch.manual_seed(0)
    model, shape = MODELS[name]()
    x = torch.rand(3, *shape)
    local = lf.local_forward(model, x)
    assert local is not None, "the model is a chain of local layers into a Linear: it must be accepted"
    img, pos, vals = _every_edit(x)
    with torch.no_grad():
        want = model(painted_copies(x, img, pos[:, None], vals[:, None, :]))
        got = local(img, pos, vals)
        unedited = model(x).repeat_interleave(shape[1] * shape[2], dim=0)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), float((got - want).abs().max())
    assert float((want - unedited).abs().max()) > 1e-3  # the edits do change the scores


def test_the_window_is_smaller_than_the_image():
    model, shape = MODELS["default mnist-cnn, normalized"]()
    local = lf.local_forward(model, torch.rand(2, *shape))
    assert local is not None
    # 3x3 of the 7x7 last activation, from an 18x18 crop of the 28x28 image
    assert (local.rows_axis.window, local.cols_axis.window) == (3, 3)
    assert (local.rows_axis.crop_size[0], local.cols_axis.crop_size[0]) == (18, 18)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x) + x, 1))


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent: cannot be traced
            x = x * 2
        return self.fc(torch.flatten(self.conv(x), 1))


class PerPixelConstant(nn.Module):
    """Adds a constant that differs per pixel: not the same function on a crop."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.register_buffer("bias_map", torch.rand(1, 1, 8, 8))
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x + self.bias_map), 1))


def _global_pool() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def _training_batch_norm() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(256, 3)).train()


@pytest.mark.parametrize("make", [
    Residual, Branching, PerPixelConstant, _global_pool, _training_batch_norm,
    lambda: create("mlp", 3, (1, 8, 8), seed=0),
    lambda: create("small-resnet", 3, (1, 8, 8), seed=0).eval(),
    lambda: nn.Sequential(nn.Conv2d(1, 4, 7), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)),  # window = whole map
])
def test_models_it_cannot_compute_exactly_get_no_local_forward(make):
    assert lf.local_forward(make(), torch.rand(2, 1, 8, 8)) is None


def test_a_wrong_local_forward_is_refused_by_the_probe(monkeypatch):
    """Without the masks that give a crop the layer's padding, border pixels come out wrong; the
    probe edits at the corners catch it."""
    model, shape = MODELS["every layer kind, 3x29x23"]()
    x = torch.rand(2, *shape)
    assert lf.local_forward(model, x) is not None
    monkeypatch.setattr(lf, "_inside", lambda rows, cols, kind: torch.ones(
        rows.shape[0] * cols.shape[0], 1, rows.shape[1], cols.shape[1], dtype=torch.float32 if kind is float
        else torch.bool))
    assert lf.local_forward(model, x) is None


def test_one_pixel_scores_edits_locally_and_counts_each_as_a_query(monkeypatch):
    model, shape = MODELS["default mnist-cnn, normalized"]()
    x = torch.rand(4, *shape)
    points = torch.tensor([3, 1, 0, 2])
    oracle = Oracle(RuntimePolicy().runner(model), 4, x.device)
    edits = PixelEdits(oracle, x, points, pixels=1)
    assert edits.local is not None
    img, pos = torch.tensor([0, 0, 1, 3, 3, 3]), torch.tensor([[0], [400], [27], [783], [5], [6]])
    vals = torch.rand(6, 1, 1)
    with torch.no_grad():
        want = model(painted_copies(x, img, pos, vals))
    got = edits.logits(img, pos, vals)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert not got.requires_grad  # scores only: no autograd graph kept for millions of rows
    assert oracle.queries.tolist() == [0, 1, 3, 2]  # images 0, 0, 1, 3, 3, 3 are points 3, 3, 1, 2, 2, 2
    # two pixels per edit, or the fast path turned off: whole images through the oracle
    assert PixelEdits(oracle, x, points, pixels=2).local is None
    assert PixelEdits(Oracle(RuntimePolicy(fast=False).runner(model), 4, x.device), x, points, pixels=1).local is None
    assert PixelEdits(Oracle(RuntimePolicy(freeze=False).runner(model), 4, x.device), x, points, pixels=1).local is None
    monkeypatch.setenv("ADVROBUST_FAST_FORWARD", "0")  # the documented override of every policy
    assert PixelEdits(Oracle(RuntimePolicy().runner(model), 4, x.device), x, points, pixels=1).local is None


def _planted_pixel_cnn(size: int, row: int, col: int) -> nn.Module:
    """A chain CNN (conv, ReLU, Flatten, Linear) whose class 1 wins exactly when pixel ``(row, col)``
    is brighter than 0.5: what One-Pixel must find through the local forward."""
    conv = nn.Conv2d(1, 2, 3, padding=1)
    fc = nn.Linear(2 * size * size, 2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 1, 1] = torch.tensor([1.0, -1.0])  # the pixel, and its negative
        conv.bias.zero_()
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor([0.0, -5.0]))
        fc.weight[1, row * size + col] = 10.0  # channel 0 at (row, col)
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), fc).eval()


def test_one_pixel_finds_a_planted_pixel_through_the_local_forward():
    size, row, col = 12, 9, 2
    model = _planted_pixel_cnn(size, row, col)
    x = 0.05 + 0.25 * torch.rand(6, 1, size, size, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(6, dtype=torch.long)
    assert lf.local_forward(model, x) is not None
    res = OnePixel(ar.L0(pixels=1), population=40, generations=30)(model, x, y)
    assert bool(res.success.all())
    changed = (res.x_adv != x).flatten(1)
    assert changed.sum(dim=1).tolist() == [1] * 6
    assert changed[:, row * size + col].all()
