"""The fast rendering paths of patch training give the values of their plain definitions: the patch
pasted on its window equals the patch warped onto the whole image, each of the blur's three ways
(one 2-D convolution, shifted copies, banded matrices) equals a replicate-padded Gaussian
convolution, and the warp's grid equals torch's own affine grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from advrobust.attacks.patch import RandomPlacement
from advrobust.transforms import warp
from advrobust.transforms.photometric import _kernels, blur, blur_way


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def whole_image_paste(placement: RandomPlacement, x: torch.Tensor, texture: torch.Tensor, params) -> torch.Tensor:
    """The definition: the RGBA texture warped onto every pixel of the image, then composited."""
    n, (h, w) = x.shape[0], x.shape[-2:]
    shape = placement.shape_mask(texture)
    rgba = torch.cat([texture * shape, shape])
    out = warp(rgba.expand(n, *rgba.shape), placement.matrix(params, h, w), "zeros", size=(h, w))
    return (1 - out[:, -1:]) * x + out[:, :-1]


@pytest.mark.parametrize(
    ("area", "scale_min", "rotation", "shape", "region", "image"),
    [
        (0.1, 0.9, 10.0, "square", (0.2, 0.2, 0.8, 0.8), (1, 28, 28)),
        (0.1, 0.5, 45.0, "circle", (0.1, 0.2, 0.9, 1.0), (3, 40, 50)),
        (0.15, 0.5, 180.0, "square", (0.0, 0.0, 1.0, 1.0), (3, 30, 20)),
        (0.05, 0.3, 30.0, "square", (0.0, 0.0, 1.0, 1.0), (1, 28, 28)),
        (0.4, 1.0, 0.0, "square", (0.0, 0.0, 1.0, 1.0), (2, 16, 16)),  # the window is the whole image
    ],
)
def test_pasting_on_the_window_equals_pasting_on_the_whole_image(area, scale_min, rotation, shape, region,
                                                                  image) -> None:
    placement = RandomPlacement(area, scale_min, rotation, shape, region)
    x = torch.rand(400, *image, generator=gen(0))
    texture = torch.rand(*placement.texture_shape(image), generator=gen(1))
    for params in (placement.sample(x, torch.arange(400), gen(2)), placement.centred(x)):
        expected = whole_image_paste(placement, x, texture, params)
        assert torch.allclose(placement.paste(x, texture, params), expected, atol=1e-5)
        alpha, colour = placement.alpha_and_pixels(x, texture, params)
        assert torch.allclose((1 - alpha) * x + colour, expected, atol=1e-5)
        pasted, covered = placement.paste_and_cover(x, texture, params)  # the windows' coverage, on the image
        assert torch.equal(pasted, placement.paste(x, texture, params)) and torch.equal(covered, alpha[:, 0] > 0.5)


def test_windowed_paste_gradient_equals_the_whole_image_gradient() -> None:
    placement = RandomPlacement(0.12, 0.6, 35.0, "circle")
    x = torch.rand(64, 1, 28, 28, generator=gen(3))
    weights = torch.rand(64, 1, 28, 28, generator=gen(4))
    texture = torch.rand(*placement.texture_shape((1, 28, 28)), generator=gen(5)).requires_grad_(True)
    params = placement.sample(x, torch.arange(64), gen(6))
    fast, = torch.autograd.grad((placement.paste(x, texture, params) * weights).sum(), texture)
    slow, = torch.autograd.grad((whole_image_paste(placement, x, texture, params) * weights).sum(), texture)
    assert float(slow.abs().sum()) > 0 and torch.allclose(fast, slow, atol=1e-4)


def reference_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Per image, a normalized Gaussian of ``sigma`` truncated at ``radius``, rows then columns, edges
    replicated; written out tap by tap in float64."""
    x = x.double()
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    out = []
    for image, s in zip(x, sigma.double(), strict=True):
        k = torch.exp(-0.5 * (taps / s).square()) if s > 1e-3 else (taps == 0).double()
        k = k / k.sum()
        h, w = image.shape[-2:]
        cols = (torch.arange(w)[:, None] + taps.long()[None]).clamp(0, w - 1)
        rows = (torch.arange(h)[:, None] + taps.long()[None]).clamp(0, h - 1)
        image = (image[..., cols] * k).sum(-1)
        image = (image[..., rows, :] * k[:, None]).sum(-2)
        out.append(image)
    return torch.stack(out)


# (shape of one image, radius, the way blur() takes for 5 of them): the fourth has a radius wider than
# the image, and so has the second shifted one, across
BLUR_CASES = [((3, 9, 13), 6, "matrices"), ((1, 28, 28), 6, "matrices"), ((2, 170, 12), 6, "matrices"),
              ((1, 60, 4), 6, "matrices"), ((1, 300, 9), 9, "matrices"), ((3, 40, 100), 3, "convolution"),
              ((1, 9, 240), 3, "shifted"), ((1, 250, 2), 3, "shifted")]


@pytest.mark.parametrize(("image", "radius", "way"), BLUR_CASES)
def test_blur_equals_a_replicate_padded_gaussian(image, radius, way) -> None:
    x = torch.rand(5, *image, generator=gen(7))
    assert blur_way(tuple(x.shape), radius) == way
    sigma = torch.tensor([0.0, 0.3, 0.7, 1.5, 2.0]) * radius / 6
    assert torch.allclose(blur(x, sigma, radius).double(), reference_blur(x, sigma, radius), atol=1e-5)


@pytest.mark.parametrize(("image", "radius", "way"), [((1, 9, 13), 6, "matrices"), ((6, 5, 20), 1, "convolution"),
                                                      ((1, 240, 1), 3, "shifted")])
def test_blur_gradients_are_the_exact_adjoint(image, radius, way) -> None:
    x = torch.rand(2, *image, generator=gen(7), dtype=torch.float64, requires_grad=True)
    assert blur_way(tuple(x.shape), radius) == way
    sigma = torch.tensor([0.4, 1.5], dtype=torch.float64)
    g = torch.rand(2, *image, generator=gen(8), dtype=torch.float64)
    (grad,) = torch.autograd.grad(blur(x, sigma, radius), x, g)
    (expected,) = torch.autograd.grad(reference_blur(x, sigma, radius), x, g)
    assert torch.allclose(grad, expected, atol=1e-12)
    assert torch.autograd.gradgradcheck(lambda v: blur(v, sigma, radius), (x,))


@pytest.mark.parametrize("image", [(1, 9, 13), (6, 5, 20), (1, 240, 1)])  # the shifted copies' size: matrices
def test_blur_is_differentiable_in_sigma(image) -> None:
    x = torch.rand(2, *image, generator=gen(7), dtype=torch.float64)
    sigma = torch.tensor([0.4, 1.5], dtype=torch.float64, requires_grad=True)
    g = torch.rand(2, *image, generator=gen(8), dtype=torch.float64)
    (grad,) = torch.autograd.grad(blur(x, sigma, 3), sigma, g)
    (expected,) = torch.autograd.grad(reference_blur(x, sigma, 3), sigma, g)
    assert float(expected.abs().min()) > 0 and torch.allclose(grad, expected, atol=1e-12)
    assert blur_way(tuple(x.shape), 3, sigma_grad=True) != "shifted"


def test_blur_taps_are_never_subnormal() -> None:
    """Gaussian taps of some σ underflow into subnormal floats (d = 3, σ ≈ 0.21 in float32), which a
    CPU multiplies ~10× slower; the taps drop them to zero instead, and the blur's values stay."""
    sigma = torch.linspace(0.0, 0.7, 501)
    k = torch.arange(-3, 4, dtype=torch.float32)
    tiny = torch.finfo(torch.float32).tiny
    raw = torch.exp(-0.5 * (k[None] / sigma[:, None].clamp_min(1e-6)).square())
    assert bool(((raw < tiny) & (raw > 0)).any())  # the unguarded Gaussian does underflow here
    taps = _kernels(sigma, 3, raw)
    assert not bool(((taps < tiny) & (taps != 0)).any())
    assert torch.allclose(taps.sum(dim=1), torch.ones(501))
    x = torch.rand(501, 1, 3, 12, generator=gen(9))
    assert torch.allclose(blur(x, sigma, 3).double(), reference_blur(x, sigma, 3), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float32])  # the grid is cached per dtype
def test_warp_equals_torchs_affine_grid(dtype) -> None:
    x = torch.rand(6, 2, 11, 17, generator=gen(8), dtype=dtype)
    affine = (torch.eye(2, 3, dtype=dtype) + 0.3 * torch.randn(6, 2, 3, generator=gen(9), dtype=dtype))
    grid = F.affine_grid(affine, list(x.shape), align_corners=False)
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    matrix = torch.cat([affine, torch.tensor([[[0, 0, 1]]], dtype=dtype).expand(6, 1, 3)], dim=1)
    out = warp(x, matrix)
    assert out.dtype == dtype and torch.allclose(out, expected, atol=1e-5)


def test_warp_divides_by_the_homogeneous_coordinate() -> None:
    x = torch.rand(3, 1, 8, 8, generator=gen(10))
    matrix = torch.eye(3).expand(3, 3, 3) * torch.tensor([2.0, 0.5, 1.0])[:, None, None]  # projectively identical
    assert torch.allclose(warp(x, matrix), x, atol=1e-5)
