"""Black-box wrappers: score-only and label-only access, numpy models, chunking, ONNX files."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import advrobust as ar
from advrobust.attacks.gradient import FGSM, PGD
from advrobust.attacks.one_pixel import OnePixel
from advrobust.attacks.square import Square
from advrobust.errors import InputError, ModelAccessError, ModelLoadError
from advrobust.models.blackbox import LabelModel, ScoreModel
from advrobust.models.onnx import load_onnx


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def _batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return x, _net()(x).argmax(dim=1)


def test_score_model_on_numpy_probabilities_keeps_the_ranking():
    net = _net()

    def predict(a: np.ndarray) -> np.ndarray:  # a numpy service that answers probabilities
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(a)), dim=1).numpy()

    box = ScoreModel(predict, numpy=True, probabilities=True, num_classes=3)
    x, _ = _batch()
    out = box(x)
    assert box.access == "scores" and not out.requires_grad
    # log-probabilities: same arg-max, and softmax gives back the service's probabilities
    torch.testing.assert_close(torch.softmax(out, dim=1), torch.softmax(net(x), dim=1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(len(x)))
    assert box.queries == len(x)


def test_gradient_attacks_refuse_black_boxes_and_query_attacks_work():
    net = _net()
    x, y = _batch()
    box = ScoreModel(net)
    for attack in (PGD(ar.Linf(eps=0.3), steps=3), FGSM(ar.Linf(eps=0.3))):
        with pytest.raises(ModelAccessError, match="gradients"):
            attack(box, x, y)
    res = Square(ar.Linf(eps=0.3), queries=50)(box, x, y)
    assert bool(ar.Linf(eps=0.3).contains(res.x_adv, x).all())
    # a black box gives no gradient even around a torch module
    xv = x.clone().requires_grad_(True)
    assert not box(xv).requires_grad
    assert all(p.grad is None for p in net.parameters())


def test_label_model_gives_one_hot_decisions_only():
    net = _net()
    x, y = _batch()
    labels = LabelModel(lambda a: net(a).argmax(dim=1), num_classes=3)
    out = labels(x)
    assert torch.equal(out, nn.functional.one_hot(y, 3).float())
    assert torch.equal(LabelModel(net)(x), out)  # from scores: the arg-max alone
    with pytest.raises(ModelAccessError):
        Square(ar.Linf(eps=0.1), queries=5)(labels, x, y)
    with pytest.raises(ModelAccessError):
        OnePixel(ar.L0(pixels=1), population=4, generations=1)(labels, x, y)
    with pytest.raises(InputError, match="num_classes"):
        LabelModel(lambda a: net(a).argmax(dim=1))(x)


def test_batch_size_chunks_the_calls():
    net = _net()
    sizes = []

    def fn(a: torch.Tensor) -> torch.Tensor:
        sizes.append(len(a))
        return net(a)

    x, _ = _batch(7)
    out = ScoreModel(fn, batch_size=3)(x)
    assert sizes == [3, 3, 1]
    torch.testing.assert_close(out, net(x).detach())


def test_bad_outputs_fail_with_a_clear_message():
    x, _ = _batch(4)
    with pytest.raises(ModelAccessError, match="num_classes"):
        ScoreModel(lambda a: torch.zeros(len(a), 5), num_classes=3)(x)
    with pytest.raises(ModelAccessError, match="shape"):
        ScoreModel(lambda a: torch.zeros(len(a)))(x)
    with pytest.raises(ModelAccessError, match="negative"):
        ScoreModel(lambda a: -torch.ones(len(a), 3), probabilities=True)(x)
    with pytest.raises(InputError):
        ScoreModel("not callable")
    with pytest.raises(InputError):
        ScoreModel(lambda a: a, batch_size=0)


def test_load_onnx_missing_file(tmp_path):
    with pytest.raises(ModelLoadError):
        load_onnx(tmp_path / "nope.onnx")


@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnx/onnxruntime not installed: pip install 'advrobust[onnx]'",
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy exporter: no onnxscript needed
def test_onnx_export_load_and_attack(tmp_path):
    net = _net()
    path = tmp_path / "net.onnx"
    x, y = _batch()
    torch.onnx.export(net, (x[:1],), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    box = load_onnx(path)
    assert box.access == "scores" and box.num_classes == 3
    torch.testing.assert_close(box(x), net(x).detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ModelAccessError):
        PGD(ar.Linf(eps=0.3), steps=2)(box, x, y)
    res = Square(ar.Linf(eps=0.3), queries=100)(box, x, y)
    assert res.success_rate > 0
    assert torch.equal(net(res.x_adv).argmax(dim=1) != y, res.success)  # confirmed on the torch original
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_onnx(tmp_path / "bad.onnx")
