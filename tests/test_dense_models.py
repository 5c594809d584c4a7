"""The built-in segmenter and detector: started from the digit classifier, and trained on the scenes."""

from __future__ import annotations

import pytest
import torch

from advrobust.data.scenes import SceneDataset, load_scenes
from advrobust.errors import InputError
from advrobust.models import create
from advrobust.models.dense import create_dense, encoder_from_classifier
from advrobust.training.dense import (
    DenseRecipe,
    detection_loss,
    fit_dense,
    grid_targets,
    noisy,
    segmentation_loss,
)


def _classifier(width: int = 4, hidden: int = 16) -> torch.nn.Module:
    return create("mnist-cnn", 10, (1, 28, 28), seed=0, width=width, hidden=hidden).eval()


@pytest.mark.parametrize("arch", ["mnist-fcn", "mnist-centernet"])
def test_full_rank_encoder_slides_the_classifier_over_the_image(arch):
    """At full rank the encoder *is* the classifier: on a 28×28 digit the window centred at cell
    (3, 3) covers the whole 7×7 feature map, so the digit rows there equal the classifier's logits.
    On a wider canvas, moving the digit by 4 pixels moves its logits by one cell (the window slides)."""
    classifier = _classifier()
    model = create_dense(arch, 11, (1, 28, 28), seed=1, width=4, hidden=16, rank=16).eval()
    encoder_from_classifier(model, classifier)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cells = model.classes(model.encoder(x))  # the class logits per cell (before any vote or upsampling)
    torch.testing.assert_close(cells[:, 1:11, 3, 3], classifier(x), atol=1e-4, rtol=1e-4)
    canvas = torch.zeros(2, 3, 1, 48, 48)
    canvas[0, :, :, 8:36, 4:32] = x
    canvas[1, :, :, 12:40, 8:36] = x
    first, moved = (model.classes(model.encoder(c)) for c in canvas)
    torch.testing.assert_close(moved[:, :, 6, 5], first[:, :, 5, 4], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first[:, :, 6, 5], first[:, :, 5, 4], atol=1e-3)


def test_a_truncated_encoder_stays_close_and_a_mismatched_classifier_is_refused():
    classifier = _classifier(hidden=32)
    model = create_dense("mnist-centernet", 11, (1, 28, 28), seed=1, width=4, hidden=32, rank=4).eval()
    encoder_from_classifier(model, classifier)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, full = model.classes(model.encoder(x))[:, 1:11, 3, 3], classifier(x)
    assert 0 < float((logits - full).abs().max()) < float(full.abs().max())  # an approximation, not a copy
    with pytest.raises(InputError, match="cannot start the dense model from this classifier"):
        encoder_from_classifier(create_dense("mnist-fcn", 11, (1, 28, 28), width=8), classifier)


@pytest.mark.slow
@pytest.mark.parametrize("data_name", ["mnist-seg", "mnist-det"])
def test_training_lowers_the_loss_on_a_few_scenes(data_name):
    """Thirty steps on 16 scenes lower the training loss by a fifth at least (the classifier here is
    untrained, so this is training from scratch: the built-in models' quality is measured in
    benchmarks/bench_tasks.py)."""
    data = load_scenes(data_name, "train", 16)
    if data.task == "segmentation":  # the top-left quarter of each scene: a quarter of the cost
        data = SceneDataset(data.name, "train", data.x[..., :32, :32], data.y[:, :32, :32], data.classes, data.task)
    arch = "mnist-fcn" if data.task == "segmentation" else "mnist-centernet"
    model = create_dense(arch, 11, (1, 64, 64), seed=0, width=4, hidden=16, rank=8)
    encoder_from_classifier(model, _classifier())
    recipe = DenseRecipe(arch=arch, data=data_name, width=4, hidden=16, rank=8, epochs=15, batch_size=8, lr=5e-3)

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            out = model(data.x)
            if data.task == "segmentation":
                return float(segmentation_loss(out, data.y))
            return float(detection_loss(out, *grid_targets(data.y, tuple(out.shape[-2:]), 4)))

    before = loss()
    fit_dense(model, data, recipe)
    assert loss() < 0.8 * before


def test_the_fast_argmax_is_argmax_ties_included():
    from advrobust.tensors import class_scores_argmax

    z = torch.randint(0, 3, (4, 5, 6, 7)).float()  # many ties
    assert torch.equal(class_scores_argmax(z), z.argmax(dim=1))


def test_the_balanced_segmentation_loss_leaves_the_logits_calibrated():
    """Logit adjustment: one free logit vector shared by every pixel of maps that are 90% background,
    7% class 1 and 3% class 2 is trained to the pixels' frequencies (softmax = 0.90, 0.07, 0.03),
    although the loss weighs background and foreground alike; without the adjustment the minimiser
    would be the weighted frequencies (0.5, 0.35, 0.15)."""
    y = torch.zeros(2, 10, 10, dtype=torch.long)
    y.view(-1)[:14] = 1
    y.view(-1)[14:20] = 2
    y[0, 0, 0] = 255  # an ignored pixel counts for nothing
    labelled = y[y != 255]
    freq = torch.stack([(labelled == c).float().mean() for c in range(3)])
    z = torch.zeros(3, requires_grad=True)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = segmentation_loss(z.view(1, 3, 1, 1).expand(2, 3, 10, 10), y)
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(z.detach().softmax(0), freq, atol=1e-4, rtol=0)


def test_noise_augmentation_stays_in_the_box_and_draws_a_size_per_image():
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4  # no clipping needed
    assert noisy(x, 0.0, torch.Generator()) is x
    out = noisy(x, 0.1, torch.Generator().manual_seed(1))
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    sizes = (out - x).flatten(1).std(dim=1)
    assert float(sizes.max()) < 0.1 * 1.5 and float(sizes.min()) < 0.03 < float(sizes.max())  # σ ~ U(0, 0.1)
    torch.testing.assert_close(noisy(x, 0.1, torch.Generator().manual_seed(1)), out)  # reproducible
    wide = noisy(torch.zeros(4, 1, 8, 8), 5.0, torch.Generator().manual_seed(2))
    assert float(wide.min()) == 0 and float(wide.max()) == 1  # clipped to the box
