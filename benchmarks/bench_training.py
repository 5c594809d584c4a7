"""Training speed and the default model's accuracy.

* the default model (``mnist-cnn`` on mnist-5k, :data:`~advrobust.training.pretrained.DEFAULT_RECIPE`)
  trained from scratch in a temporary cache: wall time and test accuracy (target: >= 96 % in about
  a minute on 2 CPU cores);
* one standard epoch of ``fit`` against its floor: the same number of bare
  forward + backward + optimizer steps on the same batches, with nothing around them (no engine,
  no metrics, no progress); the ratio is what the engine adds.

    .venv/bin/python benchmarks/bench_training.py     # writes benchmarks/results/training.json
"""

from __future__ import annotations

import os
import tempfile
import time

import torch
from common import timed, write_results
from torch import nn

from advrobust.data import load
from advrobust.models import create
from advrobust.training import fit
from advrobust.training.pretrained import DEFAULT_RECIPE, default_model


def bare_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    """The floor: SGD steps over the same batches, nothing else."""
    opt = torch.optim.SGD(model.parameters(), lr=DEFAULT_RECIPE.lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    order = torch.randperm(len(y))
    for i in range(0, len(y), batch_size):
        idx = order[i : i + batch_size]
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def main() -> None:
    r = DEFAULT_RECIPE
    train = load(r.data, split="train")

    def model() -> nn.Module:
        return create(r.arch, train.num_classes, train.input_shape, seed=r.seed, **r.arch_kwargs)

    warm = model()
    bare_epoch(warm, train.x, train.y, r.batch_size)  # warm-up: first-call costs (imports, allocator)
    floor, _ = timed(lambda: bare_epoch(model(), train.x, train.y, r.batch_size), repeats=2)
    epoch, _ = timed(lambda: fit(model(), train, epochs=1, batch_size=r.batch_size, lr=r.lr, seed=r.seed), repeats=2)

    with tempfile.TemporaryDirectory() as home:
        os.environ["ADVROBUST_HOME"] = home
        start = time.perf_counter()
        _, meta = default_model()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        default_model()
        cached_seconds = time.perf_counter() - start

    results = {
        "standard_epoch": {
            "data": f"{r.data} train ({len(train)} points)", "arch": r.arch, "arch_kwargs": r.arch_kwargs,
            "batch_size": r.batch_size, "seconds": epoch, "floor_seconds": floor, "ratio_to_floor": epoch / floor,
        },
        "default_model": {
            "recipe": {k: getattr(r, k) for k in ("epochs", "batch_size", "lr", "optimizer", "schedule", "seed")},
            "train_seconds": train_seconds, "cached_load_seconds": cached_seconds,
            "test_accuracy": meta["clean_accuracy"],
        },
    }
    path = write_results("training", results)
    print(f"standard epoch {epoch:.2f} s, floor {floor:.2f} s, ratio {epoch / floor:.2f}")
    print(f"default model: {meta['clean_accuracy']:.2%} test accuracy, trained in {train_seconds:.0f} s, "
          f"cached load {cached_seconds:.2f} s -> {path}")


if __name__ == "__main__":
    main()
