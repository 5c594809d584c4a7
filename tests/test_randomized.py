"""Randomized models: noticed, attacked with EOT, judged over many draws — never one lucky draw."""

from __future__ import annotations

import pytest
import torch
from rich.console import Console
from torch import nn

import advrobust as ar
from advrobust.cli.evaluate import results_table
from advrobust.losses import is_adversarial_by_majority
from advrobust.models.defences import GaussianNoise, InferenceDropout, RandomResizePad
from advrobust.report import write_report
from advrobust.runtime.randomness import check_randomness


class NoisyLinear(nn.Module):
    """``z = W x + c · R x`` with ``R`` drawn afresh on every call: E[∇_x z_k] = W_k exactly."""

    def __init__(self, d: int, k: int, c: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, d, generator=torch.Generator().manual_seed(0)))
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        noise = torch.randn(self.weight.shape, dtype=x.dtype)
        return flat @ (self.weight + self.c * noise).T


def test_randomness_check_flags_randomized_defences_and_never_a_deterministic_model(small_cnn, linear_model,
                                                                                 mnist_batch):
    x = mnist_batch[0][:16]
    for randomized in (GaussianNoise(small_cnn, 0.1), RandomResizePad(small_cnn, 0.9),
                       InferenceDropout(small_cnn, 0.1)):
        assert check_randomness(randomized.eval(), x).randomized
    for deterministic in (small_cnn, ar.models.BPDA(ar.models.defences.BitDepth(3), small_cnn)):
        for _ in range(3):
            found = check_randomness(deterministic, x)
            assert not found.randomized and found.max_change == 0.0
    assert not check_randomness(linear_model, torch.rand(16, *linear_model.shape)).randomized


def test_majority_rule():
    y = torch.tensor([0, 0, 0])
    draws = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 0, 2], [0, 1, 2], [1, 0, 2]])  # 5 draws × 3 points
    assert is_adversarial_by_majority(draws, y).tolist() == [True, False, True]
    assert is_adversarial_by_majority(draws, y, torch.tensor([1, 1, 2])).tolist() == [True, False, True]
    assert is_adversarial_by_majority(draws[:4], y).tolist() == [False, False, True]  # 2 of 4 is not more than half


def test_eot_averages_the_gradient_over_draws():
    torch.manual_seed(0)
    model = NoisyLinear(d=20, k=2, c=2.0)  # margin of class 0: ∇ = W_1 − W_0 + 2 (R_1 − R_0)
    x, y = torch.rand(64, 20), torch.zeros(64, dtype=torch.long)
    true_direction = (model.weight[1] - model.weight[0]).detach().sign()

    def agreement(eot: int) -> float:
        step = ar.attacks.FGSM(ar.Linf(eps=0.01), loss="margin", eot=eot).perturb(model, x, y) - x
        return float((step.sign() == true_direction).float().mean())

    one, many = agreement(1), agreement(64)
    # the sign of signal + noise agrees with the signal's with probability 1 − arctan(σ_noise/σ_signal)/π:
    # ≈ 0.65 for one draw, ≈ 0.92 for 64
    assert many > 0.85 and many > one + 0.15


def test_eot_costs_its_draws_in_queries(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:8], mnist_batch[1][:8]
    plain = ar.attacks.PGD(ar.Linf(eps=0.01), steps=3, early_stop=False)(small_cnn, x, y)
    eot = ar.attacks.PGD(ar.Linf(eps=0.01), steps=3, early_stop=False, eot=5)(small_cnn, x, y)
    assert torch.equal(eot.queries, 5 * plain.queries)  # every pass, the clean one included, costs 5


def test_one_lucky_draw_is_never_a_success():
    """A model wrong on 15% of draws: a single draw would report ~30 of 200 points broken."""

    class Flaky(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            wrong = torch.rand(x.shape[0]) < 0.15
            return torch.stack([(~wrong).float(), wrong.float()], dim=1) * 4 - 2 + 0 * x.flatten(1)[:, :1]

    torch.manual_seed(0)
    x, y = torch.rand(200, 1, 4, 4), torch.zeros(200, dtype=torch.long)
    res = ar.attacks.FGSM(ar.Linf(eps=0.0))(Flaky(), x, y)
    assert int(res.success.sum()) <= 3  # P(wrong on ≥ 6 of 11 draws) ≈ 0.3% a point


@pytest.mark.slow
def test_plain_pgd_overstates_a_randomized_model_and_eot_does_not(small_cnn, mnist_batch):
    x, y = mnist_batch[0][:60], mnist_batch[1][:60]
    defended = RandomResizePad(small_cnn, min_scale=0.8)
    torch.manual_seed(0)
    threat = ar.Linf(eps=0.2)
    plain = ar.attacks.PGD(threat, steps=20)(defended, x, y).success
    eot = ar.attacks.PGD(threat, steps=20, eot=10)(defended, x, y).success
    robust_plain, robust_eot = 1 - float(plain.float().mean()), 1 - float(eot.float().mean())
    assert robust_plain >= robust_eot + 0.15, (robust_plain, robust_eot)
    # the points the model gets wrong on nearly every draw stay adversarial under EOT (a clean verdict
    # of 11 draws would also take in points wrong on a quarter of draws, whose verdicts are coin flips)
    with torch.no_grad():
        wrong = torch.stack([defended(x).argmax(1) != y for _ in range(50)]).float().mean(0)
    assert bool((wrong >= 0.9).any()) and bool(eot[wrong >= 0.9].all())


@pytest.mark.slow
def test_on_an_adversarially_trained_cnn_plain_pgd_overstates_and_the_rand_path_does_not(pgd_at_cnn, mnist_batch):
    """Behind random resizing and padding, a PGD-AT CNN looks more robust to one-draw PGD than it is;
    what ``evaluate`` runs by itself (the rand suite) finds no less than PGD with EOT. On 50 digits at
    l∞ 0.2: PGD 94%, PGD-EOT10 76%, rand 58% robust."""
    x, y = mnist_batch[0][::8], mnist_batch[1][::8]  # 25 digits, every class
    defended = RandomResizePad(pgd_at_cnn, min_scale=0.8)
    torch.manual_seed(0)
    threat = ar.Linf(eps=0.2)
    robust = {}
    for name, attack in (("pgd", ar.attacks.PGD(threat, steps=20)),
                         ("pgd-eot", ar.attacks.PGD(threat, steps=20, eot=10))):
        rep = ar.evaluate(defended, x, y, threat=threat, suite=[attack])
        robust[name] = rep.robust_accuracy_at()
    rep = ar.evaluate(defended, x, y, threat=threat)
    assert rep.suite == "rand" and rep.randomized
    robust["rand"] = rep.robust_accuracy_at()
    assert robust["pgd"] >= robust["rand"] + 0.15, robust  # one draw per gradient overstates
    assert robust["rand"] <= robust["pgd-eot"] + 0.04, robust  # the default path is the stronger one
    assert robust["rand"] > 0.1, robust  # an adversarially trained model: something is left to measure


@pytest.mark.slow
def test_evaluate_notices_a_randomized_model_and_runs_the_rand_suite(small_cnn, mnist_batch, tmp_path):
    x, y = mnist_batch[0][:20], mnist_batch[1][:20]
    defended = GaussianNoise(small_cnn, sigma=0.2)
    rep = ar.evaluate(defended, x, y, threat=ar.Linf(eps=0.3))
    assert rep.randomized and rep.suite == "rand" and "11 draws" in rep.verdict_rule
    assert rep.attacks == ["apgd-ce", "apgd-dlr"]
    again = ar.evaluation.EvaluationResult.from_json(rep.to_json())
    assert again.randomized and again.verdict_rule == rep.verdict_rule
    assert "Randomized model" in write_report(tmp_path / "r.html", again).read_text()
    console = Console(record=True, width=200)
    console.print(results_table(again))
    assert "Randomized model" in console.export_text()
    plain = ar.evaluate(small_cnn, x, y, threat=ar.Linf(eps=0.3), suite=["fgsm"])
    assert not plain.randomized and plain.verdict_rule == "one pass"
