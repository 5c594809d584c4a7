"""DAG (Xie et al. 2017) and the gradient attacks on dense tasks: segmentation and detection."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.dag import DAG, adversarial_labels, dag_value, linf_normalized
from advrobust.errors import InputError
from advrobust.evaluation.tasks import task_metrics
from advrobust.models.dense import create_dense
from advrobust.tasks import Detection


def per_pixel_linear(threshold: float = 0.5) -> nn.Conv2d:
    """Two classes per pixel: ``z_0 = 0``, ``z_1 = x − threshold`` (a 1×1 convolution)."""
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[1] = 1.0
        conv.bias[1] = -threshold
    return conv.eval()


def test_derangements_have_no_fixed_point_and_fixed_classes_hold():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(6).repeat(3, 1)
    adv = adversarial_labels(labels, "permute", 6, gen)
    assert not bool((adv == labels).any())
    assert all(sorted(row.tolist()) == list(range(6)) for row in adv)  # a permutation per image
    detector = adversarial_labels(labels, "permute", 6, gen, first=1)
    assert detector[:, 0].tolist() == [0, 0, 0] and not bool((detector[:, 1:] == labels[:, 1:]).any())
    assert adversarial_labels(labels, "vanish", 6, gen).eq(0).all()
    assert adversarial_labels(labels, 4, 6, gen).eq(4).all()


def test_dag_value_and_step_normalization():
    logits = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])  # N=1, K=2, P=2
    value = dag_value(logits, torch.tensor([[0, 1]]), torch.tensor([[1, 0]]), torch.tensor([[True, False]]))
    assert value.item() == pytest.approx(3.0 - 1.0)
    r = torch.tensor([[[[0.5, -2.0]]], [[[0.0, 0.0]]]])
    step = linf_normalized(r, 0.5)
    assert step[0].abs().max().item() == pytest.approx(0.5) and step[1].eq(0).all()


def test_dag_matches_the_closed_form_of_a_per_pixel_linear_model():
    """``∂(z_{l'} − z_l)/∂x_p = ±1`` at an active pixel and 0 elsewhere, so each step moves every
    still-correct pixel by exactly ``γ/255`` towards the threshold: pixel ``p`` at distance
    ``(j_p + ½)·s`` flips after ``j_p + 1`` steps and stops there, and DAG stops after ``max_p``."""
    s = 0.5 / 255
    gen = torch.Generator().manual_seed(3)
    j = torch.randint(0, 30, (2, 1, 6, 6), generator=gen)
    side = torch.where(torch.rand(2, 1, 6, 6, generator=gen) < 0.5, -1.0, 1.0)  # below / above 0.5
    x = 0.5 + side * (j + 0.5) * s
    model = per_pixel_linear()
    y = model(x).argmax(dim=1)
    assert torch.equal(y, (side[:, 0] > 0).long())
    res = DAG(gamma=0.5, max_iter=200)(model, x, y)
    expected = x - side * (j + 1) * s
    torch.testing.assert_close(res.x_adv, expected, atol=1e-5, rtol=0)
    assert res.extras["iterations"].tolist() == [int(j[i].max()) + 1 for i in range(2)]
    assert res.extras["flipped"].tolist() == [1.0, 1.0] and res.success.all()
    assert res.norm.tolist() == pytest.approx([(int(j[i].max()) + 1) * s for i in range(2)], abs=1e-6)


def _smooth_threshold_segmenter() -> nn.Module:
    """Two classes per pixel: ``z_1 − z_0 = Σ_{3×3} w·(x − ½)`` with positive random weights, so a
    pixel's class depends on its neighbours too (DAG's steps for one pixel move its neighbours)."""
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        w = torch.rand(3, 3, generator=torch.Generator().manual_seed(0)) + 0.5
        conv.weight[1, 0] = w
        conv.bias[1] = -0.5 * w.sum()
    return conv.eval()


def test_flipped_fraction_rises_with_iterations():
    model = _smooth_threshold_segmenter()
    x = (0.5 + 0.03 * torch.randn(4, 1, 12, 12, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    y = model(x).argmax(dim=1)
    fractions = [DAG(max_iter=m)(model, x, y).extras["flipped"].mean().item() for m in (1, 5, 20, 80, 200)]
    assert fractions == sorted(fractions) and fractions[0] < 0.05 and fractions[-1] > 0.4


@pytest.mark.parametrize("threat", [ar.Linf(eps=0.01), ar.L2(eps=0.1)])
@pytest.mark.parametrize("attack", ["dag", "pgd", "fgsm", "mi-fgsm", "apgd-ce"])
def test_ball_and_box_hold_on_a_segmenter(threat, attack):
    model = create_dense("mnist-fcn", 4, (1, 16, 16), seed=0, width=4).eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 16, 16, generator=gen)
    x[0] = 0.0  # at the box's lower face
    y = model(x).argmax(dim=1)
    kwargs = {"max_iter": 20} if attack == "dag" else ({"steps": 5} if attack != "fgsm" else {})
    res = ar.attacks.create(attack, threat=threat, **kwargs)(model, x, y)
    assert bool((res.x_adv >= 0).all() and (res.x_adv <= 1).all())
    assert bool((res.norm <= threat.eps * (1 + 1e-5) + 1e-7).all())
    assert bool(threat.contains(res.x_adv, x).all())


def test_pgd_breaks_a_per_pixel_linear_segmenter_and_success_rises_with_eps():
    model = per_pixel_linear()
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(4)) * 0.2 + 0.4  # within 0.1 of 0.5
    y = model(x).argmax(dim=1)
    sweep = ar.attacks.PGD(ar.Linf(eps=0.1), steps=20).sweep(model, x, y, [0.0, 0.05, 0.11], task="segmentation")
    rates = sweep.success.float().mean(dim=1).tolist()
    assert rates == sorted(rates) and rates[0] == 0.0 and rates[-1] == 1.0


def _square_detector() -> nn.Module:
    """A stride-4 detector of one class: a cell's class-1 logit is ``40·(mean of its 4×4 pixels) − 30``;
    centre offset 0 (half a cell) and size ``log 2`` (8 pixels) everywhere."""

    class Detector(nn.Module):
        task, stride = "detection", 4

        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AvgPool2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = self.pool(x)
            zero = torch.zeros_like(mean)
            size = torch.full_like(mean, math.log(2.0))
            return torch.cat([zero, 40 * mean - 30, zero, zero, size, size], dim=1)

    return Detector().eval()


def test_dag_vanish_removes_the_objects_the_metric_counts():
    model = _square_detector()
    x = torch.zeros(2, 1, 16, 16)
    x[0, :, 4:8, 8:12] = 1.0  # one object at cell (1, 2) ...
    x[1, :, 8:12, 0:4] = 1.0  # ... and one at cell (2, 0)
    y = [{"boxes": [[6.0, 2.0, 14.0, 10.0]], "labels": [1]}, {"boxes": [[-2.0 + 2, 6.0, 6.0, 14.0]], "labels": [1]}]
    y[1]["boxes"] = [[0.0, 6.0, 6.0, 14.0]]  # the box clipped to the image: IoU 0.75 with the detection
    clean = task_metrics(model, x, y)
    assert clean["map"] == pytest.approx(1.0) and clean["recall"] == 1.0
    res = DAG(targets="vanish")(model, x, y)
    assert res.success.all() and res.target.eq(0).all()
    after = task_metrics(model, res.x_adv, y)
    assert after == {"map": 0.0, "recall": 0.0}
    assert all(len(d) == 0 for d in Detection(stride=4).decode(model(res.x_adv)))
    # a random perturbation of the same l∞ size leaves them in place
    noise = (x + res.norm.max() * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(0))))
    assert task_metrics(model, noise.clamp(0, 1), y)["map"] == pytest.approx(1.0)


def test_gradient_attacks_make_objects_vanish_on_a_detector():
    model = _square_detector()
    x = torch.zeros(1, 1, 16, 16)
    x[0, :, 4:8, 8:12] = 1.0
    y = [{"boxes": [[6.0, 2.0, 14.0, 10.0]], "labels": [1]}]
    res = ar.attacks.PGD(ar.Linf(eps=0.6), steps=20)(model, x, y, target=torch.tensor([0]))
    assert res.success.all() and task_metrics(model, res.x_adv, y)["recall"] == 0.0
    assert not ar.attacks.PGD(ar.Linf(eps=0.05), steps=20)(model, x, y).success.any()


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (torch.zeros(2, 6, dtype=torch.long), r"y must be a label map of shape \(2, 6, 6\)"),
        (torch.zeros(2, 6, 6, 1, dtype=torch.long), r"y must be a label map"),
        (torch.full((2, 6, 6), 7), "y holds class indices outside"),
    ],
)
def test_bad_label_maps_give_one_line_errors(y, message):
    with pytest.raises(InputError, match=message) as info:
        ar.attacks.PGD(ar.Linf(eps=0.1), steps=2)(per_pixel_linear(), torch.rand(2, 1, 6, 6), y, task="segmentation")
    assert "\n" not in str(info.value)


def test_tasks_the_attack_does_not_support_are_refused():
    with pytest.raises(InputError, match="DAG is defined for segmentation, detection, not classification"):
        DAG()(nn.Linear(4, 3), torch.rand(2, 4), torch.tensor([0, 1]))
    with pytest.raises(InputError, match="CarliniWagner is defined for classification, not segmentation"):
        ar.attacks.create("cw")(per_pixel_linear(), torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(InputError, match="a segmentation model must return per-pixel scores"):
        ar.attacks.PGD(ar.Linf(eps=0.1))(nn.Flatten(), torch.rand(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


def test_verification_dodging_with_pgd():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        embed = nn.Sequential(nn.Flatten(), nn.Linear(16, 8)).eval()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    reference = embed(x).detach()
    res = ar.attacks.PGD(ar.Linf(eps=0.5), steps=20)(embed, x, reference, task=ar.tasks.Verification(threshold=0.3))
    assert res.success.all()
    assert not ar.attacks.PGD(ar.Linf(eps=0.001), steps=5)(embed, x, reference).success.any()
