"""The transfer matrix: diagonal is white-box, similar models transfer better, the optimum bounds it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.evaluation import TransferResult, transfer_matrix


class Binary(nn.Module):
    """``z = [0, w·x + b]`` with ``b`` centering the data's scores."""

    def __init__(self, w: torch.Tensor, x: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(-(x.flatten(1) @ w).median())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


@pytest.fixture
def setup():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(300, 1, 4, 4, generator=gen)
    w = torch.randn(16, generator=gen)
    models = {
        "a": Binary(w, x),
        "a-twin": Binary(w + 0.2 * torch.randn(16, generator=gen), x),  # nearly the same model
        "other": Binary(torch.randn(16, generator=gen), x),  # unrelated
    }
    y = models["a"](x).argmax(1)
    return models, x, y


def test_matrix_shape_diagonal_and_transferability(setup):
    models, x, y = setup
    threat = ar.Linf(eps=0.1)
    res = transfer_matrix(models, models, x, y, attacks=["fgsm", "i-fgsm"], threat=threat)
    assert res.attacks == ["fgsm", "i-fgsm"] and res.sources == res.targets == list(models)
    assert len(res.table()) == 2 * 3 and len(res.matrix) == len(res.rows) == 6
    for a in range(2):
        for s in range(3):
            for t in range(3):
                assert 0.0 <= res.success[a][s][t] <= 1.0 and res.counts[a][s][t] > 0
    # the diagonal is the white-box success rate, measured directly
    for name, model in models.items():
        ok = model(x).argmax(1) == y
        direct = ar.attacks.FGSM(threat)(model, x[ok], y[ok]).success.float().mean()
        assert res.white_box("fgsm", name) == pytest.approx(float(direct))
    # crafted on a near twin, examples transfer far better than from an unrelated model
    fgsm = res.table()[:3]
    assert fgsm[1][2]["a"] > fgsm[2][2]["a"] + 0.2
    assert res.white_box("fgsm", "a") > fgsm[2][2]["a"]
    assert TransferResult.from_json(res.to_json()) == res
    assert res.matrix[res.rows.index("fgsm / a-twin")][res.columns.index("a")] == fgsm[1][2]["a"]


def test_transfer_never_beats_the_optimal_white_box_attack(setup):
    """For a binary linear model, FGSM is the exact optimum of the l∞ ∩ box problem, so an example
    crafted elsewhere can only fool the points the target's own FGSM fools."""
    models, x, y = setup
    threat = ar.Linf(eps=0.1)
    target = models["a"]
    res = transfer_matrix({"other": models["other"]}, {"a": target}, x, y, attacks=["fgsm"], threat=threat)
    ok = (models["other"](x).argmax(1) == y) & (target(x).argmax(1) == y)
    optimum = ar.attacks.FGSM(threat)(target, x[ok], y[ok]).success.float().mean()
    assert res.success[0][0][0] <= float(optimum) + 1e-9
    assert res.counts[0][0][0] == int(ok.sum())


def test_bad_arguments(setup):
    models, x, y = setup
    with pytest.raises(ar.InputError, match="eps"):
        transfer_matrix(models, models, x, y, threat=ar.Linf())
    with pytest.raises(ar.InputError, match="at least one"):
        transfer_matrix({}, models, x, y)
