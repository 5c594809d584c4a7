"""Trained members of the CNN zoo (:mod:`advrobust.models.zoo`) for the benchmarks, cached.

Each member is trained briefly (standard training, :func:`advrobust.training.fit`, :data:`TRAINING`) on ``mnist-5k``
at MNIST's size, or on the same digits as 32×32 RGB images (padded by 2 pixels, each digit drawn in
a random colour on a random dark background, seeded): no RGB data set ships with advrobust, and a
benchmark needs a trained model whose decisions mean something. The weights go to the cache's
``models/`` folder as safetensors, named by a hash of the recipe.

    from zoo_models import correctly_classified, trained
    model, x_test, y_test = trained("pytorch-example", "mnist")
    model, x, y = correctly_classified("pytorch-example", "mnist", 100)  # the first 100 it gets right
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from advrobust.data import Dataset, load
from advrobust.models.checkpoint import recipe_key
from advrobust.models.zoo import SHAPES, build
from advrobust.paths import atomic_path, cache_path
from advrobust.training import fit

#: the optimization of each member's training (others: the ``standard`` recipe's SGD for 2 epochs); the
#: global-pool CNN learns nothing in 2 epochs of SGD (10% accuracy) and gets Adam for 8
TRAINING: dict[str, dict[str, object]] = {"global-pool": {"epochs": 8, "optimizer": "adam", "lr": 2e-3}}


def digits(size: str, split: str) -> Dataset:
    """``mnist-5k``'s ``split`` at the zoo size ``size``: as is (``"mnist"``) or coloured 32×32 RGB."""
    data = load("mnist-5k", split=split)
    if size == "mnist":
        return data
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    ink = 0.5 + 0.5 * torch.rand(len(data.x), 3, 1, 1, generator=gen)
    paper = 0.3 * torch.rand(len(data.x), 3, 1, 1, generator=gen)
    digit = nn.functional.pad(data.x, (2, 2, 2, 2))
    x = (digit * ink + (1 - digit) * paper).clamp(0, 1)
    return Dataset("mnist-5k-rgb32", split, x.contiguous(), data.y, data.classes)


def trained(name: str, size: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The zoo member ``name`` at ``size`` trained on :func:`digits` (cached), in eval mode, and the
    test images and labels."""
    options = TRAINING.get(name, {"epochs": 2})
    recipe = {"zoo": name, "size": size, "seed": 0, **options}
    model = build(name, SHAPES[size], seed=0)
    path = cache_path("models", f"zoo-{name}-{size}-{recipe_key(recipe)}.safetensors")
    if path.exists():
        model.load_state_dict(load_file(str(path)))
    else:
        fit(model, digits(size, "train"), method="standard", val_attack=None, seed=0, **options)
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    test = digits(size, "test")
    return model.eval(), test.x, test.y


def correctly_classified(name: str, size: str, n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The trained member (:func:`trained`) and the first ``n`` test images it classifies correctly,
    with their labels: the points an attack benchmark attacks."""
    model, x_test, y_test = trained(name, size)
    with torch.no_grad():
        correct = (model(x_test).argmax(dim=1) == y_test).nonzero().squeeze(1)[:n]
    return model, x_test[correct], y_test[correct]
