"""The gradient-masking audit flags a model that hides its gradients and passes an honest CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advrobust as ar


class Quantized(nn.Module):
    """``f(round(4x)/4)``: the input quantization has zero gradient almost everywhere, so gradient
    attacks stall while the model stays as vulnerable as before (Athalye et al. 2018, §3.1)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


@pytest.fixture
def points(mnist_batch):
    x, y = mnist_batch
    return x[::8], y[::8]  # 25 points, every class


def test_honest_cnn_passes(small_cnn, points):
    x, y = points
    result = ar.audit(small_cnn, x, y, ar.Linf(eps=0.3), steps=20)
    verdicts = {c.name: c.verdict for c in result.checks}
    assert result.passed, result.checks
    assert verdicts["gradients"] == verdicts["linearity"] == verdicts["unbounded"] == "pass"
    assert {"eps-monotone", "iterative>single-step", "white-box>black-box", "converged"} <= set(verdicts)
    mono = next(c for c in result.checks if c.name == "eps-monotone").evidence
    assert mono["curve_falls"]
    assert mono["broken_inside_eps/2_or_eps/4_not_at_eps"] == mono["broken_at_eps_not_at_2eps"] == 0


class MasksLargePerturbations(nn.Module):
    """Honest on inputs near the data, but when many pixels sit mid-range (as after a random start in a
    large l∞ ball) it classifies ``round(x)``: zero gradient and noise removed, so PGD breaks points at
    small eps and fails at large eps (robustness that grows with eps, the audit's eps-monotone case)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = ((x > 0.2) & (x < 0.8)).flatten(1).float().mean(1)
        far = (mid > 0.15).view(-1, *([1] * (x.dim() - 1)))
        return self.inner(torch.where(far, torch.round(x), x))


def test_robustness_that_grows_with_eps_fails_eps_monotone(small_cnn, points):
    x, y = points
    masked = MasksLargePerturbations(small_cnn)
    assert torch.equal(masked(x), small_cnn(x))  # the clean digits take the honest branch
    result = ar.audit(masked, x, y, ar.Linf(eps=0.3), steps=20, queries=200)
    mono = next(c for c in result.checks if c.name == "eps-monotone")
    assert mono.verdict == "fail", mono
    assert mono.evidence["broken_inside_eps/2_or_eps/4_not_at_eps"] > 0.1
    assert not result.passed


def test_quantized_input_is_flagged(small_cnn, points):
    x, y = points
    masked = Quantized(small_cnn)
    assert float((masked(x).argmax(1) == y).float().mean()) > 0.8  # still an accurate classifier
    result = ar.audit(masked, x, y, ar.Linf(eps=0.3), surrogate=small_cnn, steps=10)
    verdicts = {c.name: c.verdict for c in result.checks}
    assert not result.passed
    assert verdicts["gradients"] == verdicts["unbounded"] == verdicts["linearity"] == "fail"
    grads = next(c for c in result.checks if c.name == "gradients").evidence
    assert grads["zero_gradient_fraction"] == 1.0
    black = next(c for c in result.checks if c.name == "white-box>black-box")
    # crafted on the unquantized twin, the examples break the masked model that PGD cannot
    assert black.evidence["transfer_breaks_beyond_pgd"] > 0
    assert black.verdict == "fail"


def test_audit_rejects_bad_threats(linear_model):
    x, y = torch.rand(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ar.InputError, match="eps"):
        ar.audit(linear_model, x, y, ar.Linf())
    with pytest.raises(ar.InputError, match="l0"):
        ar.audit(linear_model, x, y, ar.L0(eps=2))


@pytest.mark.filterwarnings("ignore:the model's outputs are non-negative")
def test_audit_checks_the_inputs_autoattack_checks(small_cnn, points):
    x, y = points
    honest = {c.name: c for c in ar.audit(small_cnn, x[:10], y[:10], ar.Linf(eps=0.3), steps=5).checks}
    assert honest["randomized"].verdict == honest["logits"].verdict == honest["classes"].verdict == "pass"
    assert honest["randomized"].evidence["max_output_change_between_calls"] == 0.0

    noisy = ar.models.defences.GaussianNoise(small_cnn, sigma=0.1)
    checks = {c.name: c for c in ar.audit(noisy, x[:10], y[:10], ar.Linf(eps=0.3), steps=5).checks}
    assert checks["randomized"].verdict == "warn" and "EOT" in checks["randomized"].explanation

    softmax = nn.Sequential(small_cnn, nn.Softmax(dim=1))
    checks = {c.name: c for c in ar.audit(softmax, x[:10], y[:10], ar.Linf(eps=0.3), steps=5).checks}
    assert checks["logits"].verdict == "fail" and checks["logits"].evidence["rows_like_probabilities"] == 1.0

    three = nn.Sequential(small_cnn, nn.Linear(10, 3))
    y3 = three(x).argmax(1).detach()
    checks = {c.name: c for c in ar.audit(three, x[:10], y3[:10], ar.Linf(eps=0.3), steps=5).checks}
    assert checks["classes"].verdict == "warn" and checks["classes"].evidence["classes"] == 3


def test_quantized_model_names_bpda_as_the_remedy(small_cnn, points):
    x, y = points
    checks = {c.name: c for c in ar.audit(Quantized(small_cnn), x[:10], y[:10], ar.Linf(eps=0.3), steps=5).checks}
    assert checks["gradients"].verdict == "fail"
    assert "ar.models.BPDA(preprocess, classifier)" in checks["gradients"].explanation
