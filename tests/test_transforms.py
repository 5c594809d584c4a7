"""Transformations: deterministic for a seed, differentiable (gradcheck), identity at strength 0,
ranges respected, output in the box."""

from __future__ import annotations

import math

import pytest
import torch

from advrobust.errors import InputError
from advrobust.tensors import clamp_unit
from advrobust.transforms import (
    Brightness,
    ColorJitter,
    Compose,
    Contrast,
    Gamut,
    GaussianBlur,
    GaussianNoise,
    Geometric,
    Identity,
    physical,
    print_and_photograph,
    printed_digit,
    warp,
)

ALL = {
    "geometric": Geometric(rotation=20, scale=0.2, translation=0.1, perspective=0.1),
    "geometric-border": Geometric(rotation=30, padding="border"),
    "brightness": Brightness(0.2),
    "contrast": Contrast(0.3),
    "color": ColorJitter(0.2, 0.05),
    "noise": GaussianNoise(0.05),
    "blur": GaussianBlur(1.5),
    "gamut": Gamut(0.2, 0.2),
    "print": print_and_photograph(),
    "physical": physical(),
}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(ALL))
def test_deterministic_for_a_seed_and_different_across_seeds(name: str) -> None:
    t = ALL[name]
    x = torch.rand(3, 3, 12, 10, generator=gen(9))
    a, b, c = t(x, gen(1)), t(x, gen(1)), t(x, gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1


@pytest.mark.parametrize("name", list(ALL))
def test_identity_at_zero_strength(name: str) -> None:
    x = torch.rand(2, 3, 11, 13, generator=gen(3))
    assert torch.allclose(ALL[name].scaled(0.0)(x, gen(4)), x, atol=1e-5)


@pytest.mark.parametrize("name", list(ALL))
def test_differentiable_gradcheck(name: str) -> None:
    t = ALL[name].scaled(0.3)  # small draws, so no pixel sits on the clamp's kink
    x = (0.3 + 0.4 * torch.rand(2, 3, 7, 6, generator=gen(5), dtype=torch.float64)).requires_grad_(True)
    params = t.sample(x.detach(), gen(6))
    assert torch.autograd.gradcheck(lambda v: t.apply(v, params), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamp_unit_has_clamps_values_and_gradient_at_the_bounds_too(dtype) -> None:
    # the transformations saturate with clamp_unit (a faster backward); a pixel exactly at 0 or 1 (a
    # patch's texture is clamped to [0, 1] after every step) must keep its gradient, as under clamp
    one_up = torch.nextafter(torch.ones((), dtype=dtype), torch.full((), 2.0, dtype=dtype))
    x = torch.cat([torch.tensor([-1.0, -0.0, 0.0, 1e-30, 0.5, 1.0, 2.0], dtype=dtype), one_up[None],
                   torch.rand(200, generator=gen(1), dtype=dtype) * 1.4 - 0.2])
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    weights = torch.rand(x.shape, generator=gen(2), dtype=dtype)
    (grad_clamp,) = torch.autograd.grad((a.clamp(0, 1) * weights).sum(), a)
    (grad_unit,) = torch.autograd.grad((clamp_unit(b) * weights).sum(), b)
    assert torch.equal(clamp_unit(x), x.clamp(0, 1))
    assert torch.equal(grad_unit, grad_clamp)
    assert grad_unit[:8].tolist() == [0.0, *weights[1:6].tolist(), 0.0, 0.0]


def test_geometric_ranges_respected() -> None:
    t = Geometric(rotation=10, scale=0.2, translation=0.05, perspective=0.1)
    p = t.sample(torch.zeros(4000, 1, 4, 4), gen(0))
    assert float(p["angle"].abs().max()) <= math.radians(10)
    assert float(p["angle"].abs().max()) > 0.9 * math.radians(10)  # the whole range is used
    assert float(p["scale"].min()) >= 0.8 and float(p["scale"].max()) <= 1.2
    assert float(p["shift"].abs().max()) <= 0.05 and float(p["corners"].abs().max()) <= 0.1


def test_photometric_ranges_respected() -> None:
    x = torch.zeros(2000, 3, 2, 2)
    assert float(Brightness(0.1).sample(x, gen(0))["b"].abs().max()) <= 0.1
    c = Contrast(0.25).sample(x, gen(0))["c"]
    assert float(c.min()) >= 0.75 and float(c.max()) <= 1.25
    g = Gamut(0.1, 0.2).sample(x, gen(0))
    assert float(g["lo"].min()) >= 0 and float(g["lo"].max()) <= 0.1 and float(g["hi"].min()) >= 0.8
    assert float(GaussianBlur(1.0).sample(x, gen(0))["sigma"].max()) <= 1.0
    noise = GaussianNoise(0.05).sample(torch.zeros(50, 1, 20, 20), gen(0))["noise"]
    assert abs(float(noise.std()) - 0.05) < 0.005


def test_rotation_by_90_degrees_is_exact_on_a_square_image() -> None:
    x = torch.rand(1, 1, 6, 6, generator=gen(0))
    params = {"angle": torch.tensor([math.pi / 2]), "scale": torch.ones(1), "shift": torch.zeros(1, 2),
              "corners": torch.zeros(1, 4, 2)}
    out = Geometric(rotation=90).apply(x, params)
    rotated = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min(float((out - r).abs().max()) for r in rotated) < 1e-5


def test_translation_moves_content_by_whole_pixels() -> None:
    x = torch.rand(1, 1, 8, 8, generator=gen(0))
    params = {"angle": torch.zeros(1), "scale": torch.ones(1), "shift": torch.tensor([[2 / 8, 0.0]]),
              "corners": torch.zeros(1, 4, 2)}
    out = Geometric(translation=0.5).apply(x, params)
    assert torch.allclose(out[..., 2:], x[..., :-2], atol=1e-5)
    assert float(out[..., :2].abs().max()) == 0  # zeros padding moved in


def test_blur_preserves_a_constant_image_and_the_mean() -> None:
    x = torch.full((2, 1, 9, 9), 0.4)
    assert torch.allclose(GaussianBlur(2.0)(x, gen(0)), x, atol=1e-6)


def test_compose_applies_in_order_and_identity_is_neutral() -> None:
    x = torch.rand(2, 1, 5, 5, generator=gen(0))
    t = Compose([Brightness(0.1), Identity()])
    assert torch.equal(t(x, gen(3)), Brightness(0.1)(x, gen(3)))
    assert "brightness" in t.describe()


def test_warp_identity_matrix() -> None:
    x = torch.rand(2, 3, 5, 7, generator=gen(0))
    assert torch.allclose(warp(x, torch.eye(3).expand(2, 3, 3)), x, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [lambda: Geometric(rotation=-1), lambda: Geometric(scale=1.5), lambda: Brightness(float("nan")),
     lambda: GaussianBlur(9), lambda: Geometric(padding="wrap"), lambda: Compose([lambda x: x])],
)
def test_bad_ranges_are_one_line_errors(make) -> None:
    with pytest.raises(InputError) as err:
        make()
    assert "\n" not in str(err.value)


def test_non_image_input_is_an_error() -> None:
    with pytest.raises(InputError):
        Brightness(0.1)(torch.rand(3, 4), gen(0))


def test_transformed_model_draws_afresh_is_seeded_and_differentiable() -> None:
    from torch import nn

    from advrobust.transforms.model import TransformedModel

    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(5, 1, 4, 4, generator=gen(0))
    t = Brightness(0.2)
    wrapped = TransformedModel(net, t, seed=7)
    first = wrapped(x)
    assert not torch.equal(first, wrapped(x))  # fresh draws on every call
    wrapped.reseed()
    assert torch.equal(first, wrapped(x))
    assert torch.allclose(first, net(t(x, gen(7))), atol=1e-6)
    averaged = TransformedModel(net, t, draws=4, seed=3)(x)  # the logits of 4 draws, averaged
    rows = t(x.repeat(4, 1, 1, 1), gen(3))
    assert torch.allclose(averaged, net(rows).reshape(4, 5, 3).mean(dim=0), atol=1e-6)
    xv = x.clone().requires_grad_(True)
    wrapped(xv).sum().backward()
    assert xv.grad is not None and float(xv.grad.abs().sum()) > 0
    with pytest.raises(InputError):
        TransformedModel(net, lambda v: v)
    with pytest.raises(InputError):
        TransformedModel(net, t, draws=0)


def test_printed_digit_keeps_an_mnist_cnn_accurate_where_physical_does_not(small_cnn, mnist_batch) -> None:
    """The MNIST preset's smaller pose keeps most clean digits readable; physical()'s ±10% shift does not."""
    x, y = mnist_batch
    g = torch.Generator().manual_seed(0)

    def accuracy(t) -> float:
        with torch.no_grad():
            return sum(float((small_cnn(t(x, g)).argmax(1) == y).float().mean()) for _ in range(5)) / 5

    clean = float((small_cnn(x).argmax(1) == y).float().mean())
    assert accuracy(printed_digit()) >= clean - 0.06
    assert accuracy(physical()) < accuracy(printed_digit()) - 0.05
    torch.testing.assert_close(printed_digit(0.0)(x, g), x)  # strength 0: nothing changes


def test_moved_points_follow_the_picture():
    """A small bright square lands where ``move_points`` says its centre goes (rotation, zoom, shift, perspective)."""
    h, w = 60, 80
    t = Compose([Brightness(0.0), Geometric(rotation=20, scale=0.2, translation=0.1, perspective=0.1)])
    x = torch.zeros(4, 1, h, w)
    x[:, :, 20:24, 50:54] = 1
    params = t.sample(x, torch.Generator().manual_seed(0))
    y = t.apply(x, params)[:, 0]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    seen = torch.stack([(y * xs).sum((1, 2)), (y * ys).sum((1, 2))], dim=1) / y.sum((1, 2))[:, None]
    said = t.move_points(torch.tensor([[[52.0, 22.0]]]).expand(4, 1, 2), params, (h, w))[:, 0]
    assert (seen - said).abs().max() < 0.2
    assert (said - torch.tensor([52.0, 22.0])).abs().max() > 2  # it did move
