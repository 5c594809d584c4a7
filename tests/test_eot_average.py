"""The EOT runner's three averages (objective, logits, probabilities): what each computes, and that
EOT beats the plain attack under transformations on the same budget of passes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import advrobust as ar
from advrobust.errors import InputError
from advrobust.evaluation.physical import perturbation_success
from advrobust.losses import get_loss
from advrobust.runtime.eot import EOT, Draws
from advrobust.runtime.runner import Runner
from advrobust.transforms import Compose, GaussianNoise, Geometric
from advrobust.transforms.model import TransformedModel


class Alternating(nn.Module):
    """A randomized model whose k-th call gives ``W_k x`` for a fixed list of matrices."""

    def __init__(self, weights: list[Tensor]) -> None:
        super().__init__()
        self.weights = weights
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        w = self.weights[self.calls % len(self.weights)]
        self.calls += 1
        return x.flatten(1) @ w.T


@pytest.mark.parametrize("average", ["objective", "logits", "probabilities"])
def test_every_average_of_a_deterministic_model_is_the_plain_pass(small_cnn, mnist_batch, average: str) -> None:
    x, y = mnist_batch[0][:8], mnist_batch[1][:8]
    for loss in ("ce", "margin"):
        objective = get_loss(loss)

        def per_point(z: Tensor, objective=objective) -> Tensor:
            return objective(z, y, None)

        _, value, grad = Runner(small_cnn).forward_and_grad(x, per_point)
        _, value_eot, grad_eot = EOT(Runner(small_cnn), 4, average).forward_and_grad(x, per_point)
        torch.testing.assert_close(value_eot, value, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(grad_eot, grad, rtol=1e-3, atol=1e-6)


def test_the_three_averages_are_what_they_say() -> None:
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(3, 4, generator=gen) * 3 for _ in range(2)]
    x, y = torch.rand(5, 1, 2, 2, generator=gen), torch.tensor([0, 1, 2, 0, 1])
    z1, z2 = (x.flatten(1) @ w.T for w in weights)
    ce = get_loss("ce")

    def objective(z: Tensor) -> Tensor:
        return ce(z, y, None)

    expected = {
        "objective": (ce(z1, y, None) + ce(z2, y, None)) / 2,
        "logits": ce((z1 + z2) / 2, y, None),
        "probabilities": -torch.log((z1.softmax(1) + z2.softmax(1)).gather(1, y[:, None]).squeeze(1) / 2),
    }
    for average, value in expected.items():
        _, got, _ = EOT(Runner(Alternating(weights)), 2, average).forward_and_grad(x, objective)
        torch.testing.assert_close(got, value, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected["objective"], expected["logits"])  # the three really differ


def test_bad_eot_settings_are_one_line_errors() -> None:
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(InputError, match="eot"):
            ar.attacks.PGD(ar.Linf(eps=0.1), eot=bad)
    with pytest.raises(InputError, match="average must be one of"):
        Draws(4, "median")
    attack = ar.attacks.PGD(ar.Linf(eps=0.1), eot=ar.EOTDraws(4, "logits"))
    assert (attack.eot, attack.eot_average) == (4, "logits")


@pytest.mark.slow
def test_eot_beats_the_plain_attack_under_transformations_on_the_same_budget(small_cnn, mnist_batch) -> None:
    """Targeted PGD through the transformations with EOT (15 steps × 8 draws, the default average)
    against plain PGD on the exact pixels with 120 steps: the same number of model passes on the
    steps (checked in queries), the same ball; EOT's examples survive fresh draws of the
    transformations more often."""
    x, y = mnist_batch[0][::4], mnist_batch[1][::4]
    target = (y + 1) % 10
    scene = Compose([Geometric(rotation=25, translation=0.05), GaussianNoise(0.15)])
    threat = ar.Linf(eps=0.25)
    plain = ar.attacks.PGD(threat, steps=120, early_stop=False)(small_cnn, x, y, target)
    eot = ar.attacks.PGD(threat, steps=15, early_stop=False, eot=8)(TransformedModel(small_cnn, scene), x, y, target)
    # the same budget: 120 passes on the steps each, plus a clean and a final check (8 passes each under EOT)
    assert int(eot.queries.max()) - 2 * 8 == int(plain.queries.max()) - 2 == 120
    r_plain = perturbation_success(small_cnn, x, plain.x_adv, y, target, transform=scene, n_draws=20)
    r_eot = perturbation_success(small_cnn, x, eot.x_adv, y, target, transform=scene, n_draws=20)
    assert r_eot.physical > r_plain.physical + 0.03, (r_eot.physical, r_plain.physical)
    assert r_plain.digital > r_plain.physical  # the plain perturbation loses success under them
