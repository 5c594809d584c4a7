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
from advrobust.models.zoo import SHAPES, ZOO, build
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


class FunctionalResidual(nn.Module):
    """The functional and residual forms: ``F.conv2d`` with the module's weights, a padded max-pool
    over negative values followed by padded convolutions (so the pool's −∞ fill reaches positions
    outside the map), a residual block whose branches differ (two 3×3 convolutions, the second
    strided, against a strided 1×1 projection), an element-wise function of a sum, functional
    dropout, and a global average pool into ``torch.flatten`` and a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 3, 3, 3) * 0.4)
        self.bias = nn.Parameter(torch.randn(6) * 0.1)
        self.conv_a = nn.Conv2d(6, 6, 3, padding=1)
        self.conv_b = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.proj = nn.Conv2d(6, 8, 1, stride=2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.conv2d(x - 0.5, self.weight, self.bias, padding=1), 3, stride=2, padding=1)
        h = F.silu(self.conv_b(F.relu(self.conv_a(h))) + self.proj(h))
        h = F.dropout(h, 0.5, training=self.training)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


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
    "functional and residual, 3x29x23": lambda: (FunctionalResidual().eval(), (3, 29, 23)),
    "global average pool module, 1x8x8": lambda: (nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), (1, 8, 8)),
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
        unedited = model(x).repeat_interleave(shape[1] * shape[2], dim=0)
        for got in _both_paths(local, x, img, pos, vals):
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), float((got - want).abs().max())
    assert float((want - unedited).abs().max()) > 1e-3  # the edits do change the scores


def _both_paths(local: lf.LocalForward, x: torch.Tensor, img, pos, vals) -> list[torch.Tensor]:
    """The scores of the crop network's path and of the changed regions' path (whichever was chosen)."""
    chosen = local.regions
    local.regions = None
    scores = [local(img, pos, vals)]
    local.regions = chosen or local.changed_regions()
    assert local.regions is not None
    scores.append(local(img, pos, vals))
    local.regions = chosen
    return scores


@pytest.mark.parametrize("name", list(ZOO))
@pytest.mark.parametrize("size", list(SHAPES))
def test_the_local_forward_is_every_zoo_model_on_every_pixel(name, size):
    """The CNNs in the styles users write them (functional, Sequential, batch norm, residual, global
    average pool; MNIST and 32x32 RGB) all get a local forward, and it is the model on every pixel."""
    shape = SHAPES[size]
    model = build(name, shape, seed=1).eval()
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(3))
    local = lf.local_forward(model, x)
    assert local is not None, f"{name} at {shape} must get a local forward"
    img, pos, vals = _every_edit(x[1:])
    with torch.no_grad():
        want = model(painted_copies(x, img + 1, pos[:, None], vals[:, None, :]))
        change = float((want - model(x[1:])).abs().max())
        for got in _both_paths(local, x, img + 1, pos, vals):
            error = float((got - want).abs().max())
            assert error < 1e-4 and error < change / 20, (error, change)  # far below what an edit changes


@pytest.mark.parametrize("size", list(SHAPES))
def test_a_large_kernel_runs_from_the_change_and_is_the_model(size):
    """The sequential CNN's second 5×5 convolution reads a 3×3 change of its input: it runs from the
    change (a matrix product added to its kept output), its ReLU and max-pool read that change added
    to the kept unedited output (the fused read), and the scores are the model's on every pixel, as
    those of the same path without the fused read and of the path recomputing the convolution."""
    shape = SHAPES[size]
    model = build("sequential", shape, seed=1).eval()
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(4))
    local = lf.local_forward(model, x)
    assert local is not None
    regions = local.regions = local.changed_regions()
    assert regions is not None and sorted(regions.incremental) == [4]
    assert {r: fusion[:2] for r, fusion in regions.fused.items()} == {6: (4, 5)}  # conv, ReLU, max-pool
    img, pos, vals = _every_edit(x[1:])
    with torch.no_grad():
        want = model(painted_copies(x, img + 1, pos[:, None], vals[:, None, :]))
        change = float((want - model(x[1:])).abs().max())
        fused = local(img + 1, pos, vals)
        regions.fused = {}
        from_change = local(img + 1, pos, vals)
        regions.incremental = {}
        recomputed = local(img + 1, pos, vals)
    assert torch.equal(fused, from_change)  # the same sums in the same order
    for got in (from_change, recomputed):
        error = float((got - want).abs().max())
        assert error < 1e-4 and error < change / 20, (error, change)


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


class TrainingDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.dropout(self.conv(x), 0.5, training=True), 1))


class SkipOverTheDenseLayer(nn.Module):
    """Reads an activation of the convolutional part again after the dense layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.fc(torch.flatten(F.relu(h), 1)) + h.mean()


def _training_batch_norm() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(256, 3)).train()


@pytest.mark.parametrize("make", [
    Residual, Branching, PerPixelConstant, _training_batch_norm, TrainingDropout, SkipOverTheDenseLayer,
    lambda: create("mlp", 3, (1, 8, 8), seed=0),
    lambda: create("small-resnet", 3, (1, 8, 8), seed=0).eval(),
    lambda: nn.Sequential(nn.Conv2d(1, 4, 7), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)),  # window = whole map
])
def test_models_it_cannot_compute_exactly_get_no_local_forward(make):
    assert lf.local_forward(make(), torch.rand(2, 1, 8, 8)) is None


def test_a_wrong_local_forward_is_refused_by_the_probe(monkeypatch):
    """Without the masks that give a crop the layer's padding, border pixels come out wrong; the
    probe edits at the corners catch it: the crop network is not used (the changed regions may be),
    and without the changed-region path there is no local forward. Likewise a changed-region path
    that pastes nothing in is refused."""
    model, shape = MODELS["every layer kind, 3x29x23"]()
    x = torch.rand(2, *shape)
    assert lf.local_forward(model, x) is not None
    with monkeypatch.context() as patch:
        patch.setattr(lf, "_inside", lambda rows, cols, kind: torch.ones(
            rows.shape[0] * cols.shape[0], 1, rows.shape[1], cols.shape[1], dtype=torch.float32 if kind is float
            else torch.bool))
        local = lf.local_forward(model, x)
        assert local is not None and local.regions is not None
        patch.setattr(lf.LocalForward, "changed_regions", lambda self: None)
        assert lf.local_forward(model, x) is None
    monkeypatch.setattr(lf.LocalForward, "crop_inputs", lambda *args: (_ for _ in ()).throw(RuntimeError))
    assert lf.local_forward(model, x) is not None  # the changed regions alone
    monkeypatch.setattr(lf._ChangedRegions, "_read", lambda self, s, e, changed, img, ri, ci: self.padded[s][e][
        img[:, None, None], self.rows.origin[s][e].index_select(0, ri)[:, None, None] + torch.arange(
            self.rows.length[s][e])[:, None], self.cols.origin[s][e].index_select(0, ci)[:, None, None] + torch.arange(
            self.cols.length[s][e])].permute(0, 3, 1, 2))
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


def test_the_built_in_small_resnet_gets_the_changed_regions():
    """Its window covers the whole last activation (no crop network), but a pixel's changed regions
    hold few of its values (a quarter of the whole model's multiply-adds): the changed-region path is
    chosen, and it is the model on every pixel."""
    model = create("small-resnet", 10, (3, 32, 32), seed=0).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    local = lf.local_forward(model, x)
    assert local is not None and local.regions is not None
    img, pos, vals = _every_edit(x[1:])
    with torch.no_grad():
        want = model(painted_copies(x, img + 1, pos[:, None], vals[:, None, :]))
        error, change = float((local(img + 1, pos, vals) - want).abs().max()), float((want - model(x[1:])).abs().max())
    assert error < 1e-4 and error < change / 20, (error, change)
