"""Certified defences on mnist-5k: robust accuracy as an interval, and what certifying costs.

1. **Randomized smoothing** (Cohen et al. 2019): ``mnist-cnn`` (width 16) trained with Gaussian noise
   at σ = 0.25 and 0.5 (the default model's recipe, noise added), smoothed at its σ. On ``--points``
   test points: certified accuracy (CERTIFY, ``n0 = 100``, ``n = --n``, α = 0.001) at l2 radius 0.5,
   1.0, 1.5 next to the attacked robust accuracy at the same l2 eps (l2 PGD, 20 steps, on the soft
   smoothed classifier over 32 fixed noise draws, its inputs judged by PREDICT with fresh noise:
   :mod:`advrobust.defences.interval`). Time per certified point and noisy samples per second.
2. **Column smoothing** (Levine & Feizi 2020): ``mnist-cnn`` on the 2-channel ablated encoding,
   trained on random bands of ``--band`` columns; certified accuracy against 5×5 patches next to the
   accuracy left by a 5×5 occlusion attack (ROA, Wu et al. 2020: gradient-guided position, PGD
   inside) on the soft vote, judged by the vote.
3. **Occlusion**: standard, PGD-AT (l∞ 0.3) and DOA (ROA 5×5 inside training) against the 5×5 ROA
   attack on the same points.

Trained models are cached (``~/.cache/advrobust/models/bench-certified-*``). The machine is shared:
``uptime`` is recorded with the results.

    .venv/bin/python benchmarks/bench_certified.py                  # n = 1000 on 100 points
    .venv/bin/python benchmarks/bench_certified.py --only train     # train (or load) the models

Writes ``benchmarks/results/certified.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
from typing import Any

import torch
from common import write_results
from torch import nn

from advrobust.data import load
from advrobust.models import create, load_checkpoint, save_checkpoint
from advrobust.paths import cache_path
from advrobust.training import create_method, fit

RADII = [0.5, 1.0, 1.5]
PATCH = 5
RECIPE = {"epochs": 10, "batch_size": 64, "lr": 0.05, "optimizer": "sgd", "schedule": "cosine", "seed": 0}
MODELS: dict[str, tuple[str, dict[str, Any], int]] = {  # name -> (method, options, input channels)
    "noise-0.25": ("gaussian-noise", {"sigma": 0.25}, 1),
    "noise-0.5": ("gaussian-noise", {"sigma": 0.5}, 1),
    "column-ablation": ("column-ablation", {"band": 4}, 2),
    "standard": ("standard", {}, 1),
    "pgd-at": ("pgd-at", {"eps": 0.3, "steps": 10}, 1),
    "doa": ("doa", {"size": PATCH}, 1),
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def trained(name: str, options: dict[str, Any] | None = None) -> nn.Module:
    """The benchmark model ``name``, loaded from the cache or trained with the recipe and cached."""
    method, method_options, channels = MODELS[name]
    method_options = {**method_options, **(options or {})}
    spec = {"method": method, "options": method_options, "channels": channels, **RECIPE}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_path("models", f"bench-certified-{name}-{key}.safetensors")
    if path.exists():
        return load_checkpoint(path)[0].eval()
    train = load("mnist-5k", split="train")
    model = create("mnist-cnn", 10, (channels, 28, 28), seed=0, width=16)
    start = time.perf_counter()
    fit(model, train, None, method=create_method(method, **method_options), **RECIPE, device="cpu")
    meta = {"arch": "mnist-cnn", "arch_kwargs": {"width": 16}, "num_classes": 10, "input_shape": [channels, 28, 28],
            "data": "mnist-5k", "training": {**spec, "seconds": time.perf_counter() - start}}
    save_checkpoint(path, model, meta)
    return model.eval()


def test_points(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = load("mnist-5k", split="test")
    return test.x[:points], test.y[:points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--band", type=int, default=4)
    parser.add_argument("--models", nargs="*", default=None, help="with --only train: which models")
    parser.add_argument("--only", choices=["train", "smoothing", "column", "occlusion"], default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.only == "train":
        for name in args.models or MODELS:
            trained(name)
        return
    results: dict[str, Any] = {"uptime_start": uptime(), "points": args.points, "n": args.n}
    write_results("certified", results)


if __name__ == "__main__":
    main()
