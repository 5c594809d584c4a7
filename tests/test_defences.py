"""Bundled defences and BPDA: what each computes, that the randomized ones are random and the
non-differentiable ones shatter gradients, and that BPDA gets an attack through them."""

from __future__ import annotations

import pytest
import torch

import advrobust as ar
from advrobust.errors import InputError
from advrobust.models.defences import (
    JPEG,
    BitDepth,
    GaussianNoise,
    InferenceDropout,
    MedianFilter,
    Preprocessed,
    RandomResizePad,
)


def _images(n: int = 6, c: int = 1, size: int = 28) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make", [
    lambda m: GaussianNoise(m, sigma=0.2),
    lambda m: RandomResizePad(m, min_scale=0.7),
    lambda m: InferenceDropout(m, p=0.3),
])
def test_randomized_defences_differ_between_calls_and_follow_their_generator(small_cnn, make):
    x = _images()
    model = make(small_cnn).eval()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
        model.generator = torch.Generator().manual_seed(5)
        first = model(x)
        model.generator = torch.Generator().manual_seed(5)
        assert torch.equal(first, model(x))


def test_random_resize_pad_keeps_the_size_and_shrinks_the_content():
    seen = {}

    def spy(x):
        seen["x"] = x
        return x.flatten(1)[:, :2]

    x = torch.ones(8, 1, 20, 20)
    RandomResizePad(spy, min_scale=0.5, generator=torch.Generator().manual_seed(1))(x)
    out = seen["x"]
    assert out.shape == x.shape
    mass = out.flatten(1).sum(1) / x[0].numel()
    # an all-ones image shrunk by s in each direction covers about s² of the canvas, s ∈ [0.5, 1]
    assert bool((mass > 0.2).all()) and bool((mass < 1.0).all()) and float(mass.std()) > 0.01


def test_inference_dropout_leaves_the_given_model_alone_and_needs_activations(small_cnn):
    x = _images()
    with torch.no_grad():
        before = small_cnn(x)
        InferenceDropout(small_cnn, p=0.5)(x)
        assert torch.equal(small_cnn(x), before)
    with pytest.raises(InputError, match="after="):
        InferenceDropout(torch.nn.Flatten(), p=0.5)


def test_bit_depth_and_jpeg_values_and_their_zero_gradients():
    x = _images(c=3).requires_grad_(True)
    squeezed = BitDepth(bits=1)(x)
    assert set(squeezed.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(squeezed.detach(), (x.detach() >= 0.5).float())
    jpeg = JPEG(quality=50)(x)
    assert jpeg.shape == x.shape and 0 < float((jpeg.detach() - x.detach()).abs().mean()) < 0.3
    for out in (squeezed, jpeg):
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert float(grad.abs().max()) == 0.0
    gray = JPEG(quality=90)(_images(c=1))
    assert float((gray - _images(c=1)).abs().mean()) < 0.1


def test_median_filter_removes_an_isolated_pixel_and_keeps_flat_images():
    flat = torch.full((1, 1, 9, 9), 0.4)
    assert torch.allclose(MedianFilter(3)(flat), flat)
    spiked = flat.clone()
    spiked[0, 0, 4, 4] = 1.0
    assert torch.allclose(MedianFilter(3)(spiked), flat)
    assert MedianFilter(2)(_images()).shape == (6, 1, 28, 28)


@pytest.mark.parametrize("bad", [lambda: BitDepth(0), lambda: JPEG(0), lambda: MedianFilter(1),
                                 lambda: GaussianNoise(torch.nn.Identity(), sigma=0),
                                 lambda: RandomResizePad(torch.nn.Identity(), min_scale=1.5)])
def test_bad_parameters_are_one_line_errors(bad):
    with pytest.raises(InputError) as info:
        bad()
    assert "\n" not in str(info.value)


def test_bpda_forward_is_the_defence_and_its_backward_the_approximation(small_cnn):
    x = _images()
    defended = Preprocessed(BitDepth(bits=2), small_cnn)
    bpda = ar.models.BPDA(BitDepth(bits=2), small_cnn)
    with torch.no_grad():
        assert torch.equal(bpda(x), defended(x))
    xv = x.clone().requires_grad_(True)
    (through_bpda,) = torch.autograd.grad(bpda(xv)[:, 3].sum(), xv)
    squeezed = BitDepth(bits=2)(x).detach().requires_grad_(True)
    (at_squeezed,) = torch.autograd.grad(small_cnn(squeezed)[:, 3].sum(), squeezed)
    assert torch.allclose(through_bpda, at_squeezed)  # identity backward: f's gradient at g(x)
    xv = x.clone().requires_grad_(True)
    (naive,) = torch.autograd.grad(defended(xv)[:, 3].sum(), xv)
    assert float(naive.abs().max()) == 0.0
    halved = ar.models.BPDA(BitDepth(bits=2), small_cnn, backward=lambda t: t / 2)
    xv = x.clone().requires_grad_(True)
    (half,) = torch.autograd.grad(halved(xv)[:, 3].sum(), xv)
    assert torch.allclose(half, at_squeezed / 2)


def test_pgd_fails_on_a_quantized_model_and_succeeds_through_bpda(small_cnn, mnist_batch):
    x, y = mnist_batch
    x, y = x[:40], y[:40]
    defended = Preprocessed(BitDepth(bits=2), small_cnn)
    with torch.no_grad():
        keep = defended(x).argmax(1) == y
    x, y = x[keep], y[keep]
    attack = ar.attacks.PGD(ar.Linf(eps=0.2), steps=20, random_start=False)
    naive = attack(defended, x, y).success.float().mean()
    through = attack(ar.models.BPDA(BitDepth(bits=2), small_cnn), x, y)
    assert float(naive) == 0.0  # zero gradients: PGD never moves
    assert float(through.success.float().mean()) >= 0.8
    with torch.no_grad():  # BPDA's adversarial examples fool the deployed defence itself
        assert bool((defended(through.x_adv[through.success]).argmax(1) != y[through.success]).all())


def test_bpda_rejects_what_is_not_callable(small_cnn):
    with pytest.raises(InputError, match="callables"):
        ar.models.BPDA(3, small_cnn)
